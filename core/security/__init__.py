"""Security primitives: the key ring and ciphertexts, redaction, webhook signatures.

- `crypto`: AES-256-GCM key ring, bound ciphertexts, SSH key pairs.
- `redaction`: secret values and shapes removed from any text that leaves a process.
- `signing`: Standard Webhooks verification and signing, webhook secret format.

May import: `core.errors` only. Everything else in `core` builds on it.
"""
