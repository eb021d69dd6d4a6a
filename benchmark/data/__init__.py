"""The dataset layer: sources (URLs, mirrors, checksums), fetch, loaders, splits, binarization.

Other modules use:
    from benchmark.data.splits import DATA_CONDITIONS, Dataset, DataUnavailable, load_dataset
    from benchmark.data.binarization import make_binarizer, binarize_once, decoder_bias_mean
Fetching is its own step (`python -m benchmark fetch`); nothing here downloads implicitly.
"""
