"""The torch-free bottom layer for run directories: what a run is on disk, written atomically, and whom to trust."""
