"""Records → typed frames: the column contract, session and transcript frames, the Parquet
store, and the parsing of engine hosts and time spans."""
