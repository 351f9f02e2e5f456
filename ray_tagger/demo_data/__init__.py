"""Synthetic demo data set in the layout of FSDKaggle2019, made with numpy only.

The demo set lets the whole pipeline (prepare -> 15 + 6 CRNN trainings -> ensemble) run on
a laptop. It imitates the structure that matters to the UPB system:

- 28 classes of physically modelled sounds (:mod:`.instruments`, :mod:`.percussion`,
  :mod:`.environment`), with real within-class variation (register, tempo, timbre, level,
  room) and some deliberately confusable pairs;
- ``curated`` clips: mixtures of 1-3 classes in a synthetic room over a background,
  lengths 0.5-15 s (log-uniform);
- ``noisy`` clips: ~15 s, heard through a degraded channel (low-pass, louder background,
  occasional clipping), and for a fraction ``noise_rate`` of them a corrupted label set;
- ``test`` clips: like curated; their true labels are written *beside* the data set folder
  (``<out_dir>-test-labels.csv``) in the Kaggle layout, and into the test CSV in the Zenodo one.

Randomness is explicit: every clip has its own ``numpy.random.Generator`` streams derived
from ``(seed, source, index, purpose)`` through ``np.random.SeedSequence``; nothing touches
global state, so one config always gives byte-identical files.

Modules, in data-flow order: :mod:`.signals` (DSP helpers), :mod:`.scores` (melodies and
drum patterns), the class generators, :mod:`.sounds` (the vocabulary), :mod:`.plan`
(configuration, labels, corruption), :mod:`.mix` (rendering a clip), :mod:`.write`
(layouts, CSVs, :func:`generate`).
"""

from __future__ import annotations

from .mix import render_clip
from .plan import LAYOUTS, SOURCES, ClipPlan, DemoConfig, DemoSummary, class_names, plan_clips, source_count
from .sounds import CLASSES, CONFUSABLE, ClassGenerator
from .write import INFO_NAME, NOISY_TRUTH_SUFFIX, TEST_LABELS_SUFFIX, generate

__all__ = [
    "CLASSES",
    "CONFUSABLE",
    "INFO_NAME",
    "LAYOUTS",
    "NOISY_TRUTH_SUFFIX",
    "SOURCES",
    "TEST_LABELS_SUFFIX",
    "ClassGenerator",
    "ClipPlan",
    "DemoConfig",
    "DemoSummary",
    "class_names",
    "generate",
    "plan_clips",
    "render_clip",
    "source_count",
]
