"""N-gram language models for decoding: estimation, ARPA files, lexicons."""
