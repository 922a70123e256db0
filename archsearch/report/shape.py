"""A trial's network as one short line, from the overrides it recorded: `[8,14]p pool 1x1:10 [6,6,14]`, the 3x3
widths of each stage in brackets (p: padded), max-pools and 1x1 transitions between them."""
from __future__ import annotations

from typing import Optional, Sequence

from archsearch.core.defaults import CONF
from archsearch.core.errors import ConfigError


def blocks_text(blocks: Sequence[dict]) -> str:
    parts = []
    for b in blocks:
        if b.get("transition"):
            parts.append(f"1x1:{b['transition']}")
        if b["convs"]:
            parts.append("[" + ",".join(map(str, b["convs"])) + "]" + ("p" if b.get("padding") else ""))
        if b.get("pool"):
            parts.append("pool")
    return " ".join(parts)


def shape_text(overrides: Sequence[str]) -> Optional[str]:
    """The network the overrides build from their model config, or None where they do not name one we can read."""
    from omegaconf import OmegaConf

    from archsearch.core.model import expand

    model = next((o.split("=", 1)[1] for o in overrides if o.startswith("model=")), None)
    if model is None or not (CONF / "model" / f"{model}.yaml").is_file():
        return None
    dotlist = [o[len("model."):] for o in overrides if o.startswith("model.")]
    try:
        cfg = OmegaConf.merge(OmegaConf.load(CONF / "model" / f"{model}.yaml"), OmegaConf.from_dotlist(dotlist))
        return blocks_text(OmegaConf.to_container(expand(cfg), resolve=True)["blocks"])
    except (ConfigError, ValueError, KeyError):
        return None
