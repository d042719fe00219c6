"""Deployment recipes (Ray cluster launcher, KubeRay) and the offline installer for nodes without a package index."""
