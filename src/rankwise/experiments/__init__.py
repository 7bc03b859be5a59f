"""The survey's experiments (arXiv 2503.19859), each a ``run(out_dir, ...)`` that writes its figure."""
