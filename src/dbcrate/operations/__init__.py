"""Operations: the only place engines, codecs, storage and the catalog are joined.

The CLI, the future daemon and the control plane call these functions; nothing here
knows about argv, terminals or HTTP.
"""
