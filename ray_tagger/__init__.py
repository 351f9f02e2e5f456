"""ray_tagger: the UPB DCASE 2019 Task 2 audio tagger, trained as a Ray ensemble."""

__version__ = "0.1.0"
