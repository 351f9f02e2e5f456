"""``python -m ray_tagger`` is the ``ray-tagger`` command."""

from .cli import main

raise SystemExit(main())
