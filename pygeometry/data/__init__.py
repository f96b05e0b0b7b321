"""Datasets in the project's HDF5 format (see :mod:`pygeometry.data.hdf5`), and converters."""
from .hdf5 import KEYS, DatasetWriter, read_list_file, write_list_file

__all__ = ["KEYS", "DatasetWriter", "read_list_file", "write_list_file"]
