"""Sealed data: the chunked AES-256-GCM stream format, Merkle content roots, HPKE key grants, keystore."""
