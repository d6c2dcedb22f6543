"""The corpus store: a corpus prepared once into shards of token ids, memory-mapped by training.

`Inputs` (`store/inputs.py`) names what it is made from; `prepare_store` (CLI `protlm corpus prepare`)
builds it, in parallel and per shard; `index_store` (`protlm corpus index`, `store/index.py`) finishes it;
`TokenStore` reads it. The layout is in `store/format.py`.
"""

from protlm.store.format import TokenStore, is_store
from protlm.store.index import index_store
from protlm.store.inputs import Inputs
from protlm.store.prepare import DEFAULT_SHARD_SIZE, ensure_store, parse_shard, prepare_store

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "Inputs",
    "TokenStore",
    "ensure_store",
    "index_store",
    "is_store",
    "parse_shard",
    "prepare_store",
]
