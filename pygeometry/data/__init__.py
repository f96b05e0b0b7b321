"""Datasets in the project's HDF5 format (see :mod:`pygeometry.data.hdf5`), and converters."""
from .hdf5 import KEYS, DatasetWriter, SplitError, read_list_file, validate_split, write_list_file

__all__ = ["KEYS", "DatasetWriter", "SplitError", "read_list_file", "validate_split", "write_list_file"]
