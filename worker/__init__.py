"""The worker runtime: recipe → model → decrypt → train → evaluate → seal → attest.

The only package of the project that imports torch, transformers and peft. It imports llmos_chain's
crypto and attestation; llmos_chain never imports it (the executor reaches it through a process).
"""
