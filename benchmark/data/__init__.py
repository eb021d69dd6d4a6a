"""The data stage: sources (URLs, mirrors, checksums), fetch, loaders, splits, binarization.

Fetching is its own step (`python -m benchmark fetch`); nothing here downloads implicitly.
It hands the next stages a Dataset (train/valid/test arrays, split as the authors' code split
them, with the sha256 of the files they came from) and the binarizers that turn its gray values
into the binary images every model sees: fixed data as is, dynamic data drawn afresh for every
minibatch, test sets once with TEST_BINARIZATION_SEED. lm_matching.py and lm_pairs.py find the
MNIST gray image behind every Larochelle-Murray binary image (the mnist-dynamic-lm50k condition
and the LM test binarization need them); test_binarizations.py holds the binarizations of the
MNIST test images any MNIST run can be scored on.
"""

from benchmark.exports import lazy_exports

EXPORTS = {  # public name: the module of this package that defines it
    "CONDITION_SIZES": "splits",
    "DATA_CONDITIONS": "splits",
    "Dataset": "splits",
    "DataUnavailable": "splits",
    "load_dataset": "splits",
    "Binarizer": "binarization",
    "TEST_BINARIZATION_SEED": "binarization",
    "binarize_once": "binarization",
    "decoder_bias_mean": "binarization",
    "make_binarizer": "binarization",
    "DynamicBinarizer": "binarization",
    "TEST_BINARIZATION_KINDS": "test_binarizations",
    "BinarizedTestSet": "test_binarizations",
    "parse_test_binarization": "test_binarizations",
    "binarized_test_images": "test_binarizations",
    "LMPairs": "lm_pairs",
    "MatchingError": "lm_matching",
    "load_lm_pairs": "splits",
    "Catalogue": "sources",
    "RawFile": "sources",
    "raw_dir": "sources",
    "fetch_dataset": "fetch",
    "fetch_command": "fetch",
    "info_command": "info",
    "match_command": "matching_report",
}
__all__ = sorted(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
