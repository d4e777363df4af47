"""Algorithm plug-ins: every module here registers one algorithm with ``marlbench.algorithm.register``."""
