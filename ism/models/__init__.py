"""The networks: classifier, ISM, GAN, detector and the baselines (bottom layer: they import only ism.hub)."""
