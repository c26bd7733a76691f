"""Dataset facts: the one home of the SYSU-MM01, RegDB and LLCM constants the code relies on.

Spec: ``spec/data/sysu.md``, ``spec/data/regdb.md``, ``spec/data/llcm.md``; figures [protocol]
from the datasets' own releases and evaluation code (``../shared/papers.md``). Readers, the
SynthVI writer, the protocols, the command line defaults and the tests' strategies import them
from here.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = [
    "LLCM_IDS",
    "LLCM_IMAGES",
    "LLCM_INFRARED_CAMERAS",
    "LLCM_TEST_IDS",
    "LLCM_TRAIN_IDS",
    "LLCM_VISIBLE_CAMERAS",
    "REGDB_CAMERAS",
    "REGDB_IDS",
    "REGDB_IDS_PER_SPLIT",
    "REGDB_IMAGES_PER_ID",
    "REGDB_TRIALS",
    "SYSU_CAMERAS",
    "SYSU_IDS",
    "SYSU_IMAGES",
    "SYSU_INDOOR_CAMERAS",
    "SYSU_IR_CAMERAS",
    "SYSU_RGB_CAMERAS",
    "SYSU_TRAINVAL_IDS",
]

# --- SYSU-MM01 [protocol] ---------------------------------------------------------------------
#: Cameras 1..6; 1, 2, 4, 5 are visible (RGB), 3 and 6 infrared; 1 and 2 are indoor.
SYSU_CAMERAS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
SYSU_RGB_CAMERAS: tuple[int, ...] = (1, 2, 4, 5)
SYSU_IR_CAMERAS: tuple[int, ...] = (3, 6)
SYSU_INDOOR_CAMERAS: tuple[int, ...] = (1, 2)
#: Identities per split of the official ``exp/*_id.txt`` files.
SYSU_IDS = MappingProxyType({"train": 296, "val": 99, "test": 96, "available": 491})
#: The training identities of the usual recipe (train + val): the classifier's width.
SYSU_TRAINVAL_IDS = SYSU_IDS["train"] + SYSU_IDS["val"]  # 395
#: Images per modality in the released folders.
SYSU_IMAGES = MappingProxyType({"visible": 30071, "infrared": 15792})

# --- RegDB [protocol] -------------------------------------------------------------------------
#: Camera ids of the features format: 1 visible, 2 thermal.
REGDB_CAMERAS: tuple[int, ...] = (1, 2)
REGDB_IDS = 412
REGDB_IDS_PER_SPLIT = 206  # train and test halves of every trial
REGDB_IMAGES_PER_ID = 10  # per modality
REGDB_TRIALS = 10

# --- LLCM [protocol] --------------------------------------------------------------------------
#: Camera folders of each modality (``test_vis``, ``test_nir``); camera k is one physical camera
#: in both modalities; there is no infrared camera 3.
LLCM_VISIBLE_CAMERAS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9)
LLCM_INFRARED_CAMERAS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 8, 9)
LLCM_IDS = 1064
LLCM_TRAIN_IDS = 713
LLCM_TEST_IDS = LLCM_IDS - LLCM_TRAIN_IDS  # 351
LLCM_IMAGES = 46767
