"""The ``rankwise`` command line: finetune, pretrain, bench, analyze, compress."""
