"""Few-shot image data: archive download and extraction, Omniglot and MiniImagenet
preprocessing into compact uint8 arrays, and N-way K-shot episode sampling.

Modules: ``archives`` (official URLs and checksums), ``download`` (mirrors, verified and
resumable fetch), ``extract`` (safe extraction), ``arrays`` (checksummed array files),
``omniglot``, ``miniimagenet``, ``episodes``.
"""
