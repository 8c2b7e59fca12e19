"""dsfleet agent: converges one GPU host's DeepStream containers to its node config."""
