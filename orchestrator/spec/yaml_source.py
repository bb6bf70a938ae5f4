"""YAML from users, bounded: a document whose anchors and aliases (``&name`` / ``*name``) would
expand to more than :data:`MAX_VALUES` values (a "billion laughs" alias bomb), or that refers to
itself, is refused before anything builds or walks the expanded value."""

from __future__ import annotations

from typing import Any

import yaml

from orchestrator.errors import SpecError

#: The most values (scalars, lists, mappings) a study file may hold once its aliases are expanded.
MAX_VALUES = 100_000


class BoundedSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that measures the composed document, aliases expanded, before
    constructing it (``source`` names the file in the error)."""

    source = "the YAML document"

    def construct_document(self, node: yaml.Node) -> Any:
        check_expanded_size(node, self.source)
        return super().construct_document(node)


def check_expanded_size(root: yaml.Node, source: str, limit: int = MAX_VALUES) -> int:
    """How many values ``root`` holds with every alias expanded; :class:`SpecError` past
    ``limit`` or for a node that contains itself. Linear in the distinct nodes (sizes are
    memoised per node), so a bomb is measured without being expanded."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if children_done:
            open_nodes.discard(key)
            size = 1 + sum(sizes[id(child)] for child in children)
            if size > limit:
                raise _too_big(source, limit)
            sizes[key] = size
            continue
        open_nodes.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in open_nodes:  # an ancestor: the value would contain itself
                raise SpecError("study file", source, "YAML whose aliases (*name) do not refer to a value that "
                                "contains them", "An alias inside the value its anchor (&name) marks would make "
                                "that value infinite: write the value out instead.")
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _too_big(source: str, limit: int) -> SpecError:
    return SpecError("study file", source, f"a YAML document of at most {limit:,} values once its aliases are expanded",
                     f"Its anchors (&name) and aliases (*name) nest so that it would expand to more than {limit:,} "
                     "values (an alias bomb), which stepsize refuses before building it: write the values out, "
                     "or use fewer nested aliases.")


def load_yaml(text: str, source: str) -> Any:
    """Parse one YAML document from a user with the safe loader, bounded as above; YAML syntax
    errors are raised as ``yaml.YAMLError`` for the caller to word."""
    loader = BoundedSafeLoader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
