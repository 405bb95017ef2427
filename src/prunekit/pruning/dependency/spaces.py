"""Unit spaces: a union-find over "which units index this tensor's unit dimension".

Each traced tensor that carries units is a :class:`Val` (a space id and a kind); the
:class:`Spaces` record which modules produce, follow or consume each space, and
unite spaces whose units must go together. Used by :mod:`.rules` and :mod:`.groups`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import fx


@dataclass(frozen=True)
class Val:
    """A traced tensor whose unit dimension is indexed by ``space``.

    kind: ``chan`` (dim 1 of a feature map), ``feat`` (features of a 2-D tensor),
    ``flat`` (a flattened feature map: dim 1, each unit spans ``fan`` entries),
    ``any`` (derived from the model input: fixed, so only followed, never sliced).
    """

    space: int
    kind: str


class Spaces:
    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.parent: list[int] = []
        self.info: list[dict[str, Any]] = []
        self.module_out: dict[str, int] = {}  # a module called twice shares its spaces
        self.module_in: dict[str, int] = {}
        self.pending: list[tuple[int, str]] = []  # (space, error) raised if space is prunable

    # -- union-find over spaces ---------------------------------------------------------
    def new_space(
        self, size: int | None = None, fixed: str | None = None, opaque: str | None = None
    ) -> int:
        """``fixed``: why units can never go (input, output); ``opaque``: the space is
        the output of an unsupported op, so whatever it is tied to is kept too."""
        self.parent.append(len(self.parent))
        self.info.append(
            {
                "size": size,
                "producers": [],
                "followers": [],
                "consumers": [],
                "fixed": fixed,
                "opaque": opaque,
            }
        )
        return len(self.parent) - 1

    def find(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            ia, ib = self.info[ra], self.info[rb]
            for key in ("producers", "followers", "consumers"):
                ia[key] += [x for x in ib[key] if x not in ia[key]]
            ia["fixed"] = ia["fixed"] or ib["fixed"]
            ia["opaque"] = ia["opaque"] or ib["opaque"]
            ia["size"] = ia["size"] or ib["size"]
        return ra

    def fix(self, v: Val, reason: str) -> None:
        info = self.info[self.find(v.space)]
        info["fixed"] = info["fixed"] or reason

    def add(self, s: int, key: str, item: Any) -> None:
        lst = self.info[self.find(s)][key]
        if item not in lst:
            lst.append(item)

    # -- roles ----------------------------------------------------------------------------
    def refuse(self, v: Val, message: str) -> Val:
        """An op the tables do not cover: its output is tied to ``v`` (we cannot tell
        which units it mixes) and ``message`` is raised unless the group is fixed anyway
        (e.g. a softmax on the logits)."""
        self.pending.append((v.space, message))
        return Val(self.union(v.space, self.new_space(opaque=message)), "any")

    def consume(self, v: Val, name: str, kinds: tuple[str, ...], what: str) -> bool:
        if v.kind != "any" and v.kind not in kinds:
            self.refuse(v, f"{what} {name!r} gets a {KIND_WORDS[v.kind]}")
            return False
        if name in self.module_in:
            self.union(self.module_in[name], v.space)
        self.module_in[name] = v.space
        self.add(v.space, "consumers", name)
        return True

    def produce(self, name: str, size: int, kind: str) -> Val:
        s = self.new_space(size)
        if name in self.module_out:
            s = self.union(self.module_out[name], s)
        self.module_out[name] = s
        self.add(s, "producers", name)
        return Val(s, kind)

    def follow(self, v: Val, name: str) -> Val:
        self.add(v.space, "followers", name)
        return v


KIND_WORDS = {
    "chan": "feature map (flatten it first?)",
    "feat": "2-D tensor",
    "flat": "flattened feature map",
    "any": "input tensor",
}


# -- module rules: (analysis, module path, module, input) -> output --------------------
