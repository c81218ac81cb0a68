"""Content stages: reading and hashing files, copying bytes, manifests, the hash cache, transforms."""
