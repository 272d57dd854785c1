"""Entity types, keys, field limits and validation rules: pure data, no I/O."""
