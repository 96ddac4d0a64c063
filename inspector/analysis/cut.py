"""Ending a census's forward passes after the last site: what runs after it (GPT-2's 50,257-wide ``lm_head``,
a classifier, a final norm) is not computed when nothing reads the output.

A first forward shows where the sites end (of the first batch's first two rows, or of the first batch
itself, run whole: see :class:`ForwardCut`): the *candidates* are the modules that hold no
site (no counted layer, activation module or tap in them) and are children of a module holding all the
sites (the model, ``transformer``, ``model``: the chain down to where the sites part ways), and the cut is
the first candidate to start after the last site's activation was observed. From then on, that
module's forward pre-hook ends each pass (:class:`_Cut`, a ``BaseException``: no ``except Exception``
in a model catches it). A layer inside a block, an expert of a mixture, a layer called once more later in
the same block: all lie inside a module that holds a site, so the cut is never among them.

Where no candidate starts after the last site (a masked LM, whose last site, the head's transform, and
its 30,522-wide decoder share the module ``cls.predictions``), the cut may go one level deeper: a module
without a site inside a module holding the last site observed (``cls.predictions.transform.LayerNorm``),
when that first forward observed every site, and the module is registered after every site's modules
(so no site declared after it, an expert that forward did not route to, is left out) and first started
after the last site (:func:`later_candidates`).

Not cut (the forward runs whole): no candidate starts after the last site; a candidate also started
before it; a model wrapped by ``torch.distributed`` or ``torch.nn.parallel`` (DDP, FSDP: their forward holds
collectives and state) or compiled (``torch.compile``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from inspector.analysis.guard import _Guard
from inspector.analysis.inputs import Batch
from inspector.analysis.sites import Site


class _Cut(BaseException):
    """Raised by the cut module's pre-hook: this forward has done all the census needs."""


def _observed_at(site: Site) -> str:
    """The module whose forward hook observes ``site``'s activation (its activation module, or its tap)."""
    return site.module if site.found_by in ("module", "convention") and site.module else site.tap


def _related(sites: tuple[Site, ...]) -> set[str]:
    """The modules of ``sites``: each counted layer, its tap and the module observing its activation."""
    return {p for s in sites for p in (s.layer, s.tap, _observed_at(s)) if p}


def _holds(path: str, inside: Iterable[str]) -> bool:
    """Whether the module ``path`` is, or contains, one of the modules ``inside``."""
    prefix = f"{path}."
    return any(name == path or name.startswith(prefix) for name in inside) if path else True


def candidates(model: nn.Module, sites: tuple[Site, ...]) -> dict[str, nn.Module]:
    """The modules a forward may be cut at (see the module docstring), by path; ``{}`` when none can be."""
    if any(_wrapped(m) for m in model.modules()):
        return {}
    related = _related(sites)
    if not related:
        return {}
    modules = dict(model.named_modules())
    chain = _chain(related)  # the modules that hold every site
    out: dict[str, nn.Module] = {}
    for parent in chain:
        holder = modules.get(parent)
        if holder is None:
            continue
        for name, child in holder.named_children():
            path = f"{parent}.{name}" if parent else name
            if not _holds(path, related) and path not in chain:
                out[path] = child
    return out


def later_candidates(model: nn.Module, sites: tuple[Site, ...]) -> dict[str, nn.Module]:
    """The modules a forward may be cut at one level deeper (see the module docstring), by path: the
    children without a site of a module holding a site, other than :func:`candidates`' parents, that are
    registered after every site's modules; ``{}`` when none can be."""
    if any(_wrapped(m) for m in model.modules()):
        return {}
    related = _related(sites)
    modules = dict(model.named_modules())
    order = {name: i for i, name in enumerate(modules)}
    last = max((order[p] for p in related if p in order), default=-1)
    if last < 0:
        return {}
    chain = set(_chain(related))
    holders = {name for name in modules if name not in chain and _holds(name, related)}
    out: dict[str, nn.Module] = {}
    for parent in holders:
        for name, child in modules[parent].named_children():
            path = f"{parent}.{name}" if parent else name
            if order.get(path, -1) > last and not _holds(path, related):
                out[path] = child
    return out


def _chain(related: set[str]) -> list[str]:
    """The modules holding every one of ``related``: the model, then each common leading part of their paths."""
    parts = [p.split(".") for p in related]
    common: list[str] = []
    for names in zip(*parts, strict=False):
        if len(set(names)) != 1:
            break
        common.append(names[0])
    return [".".join(common[:i]) for i in range(len(common) + 1)]


def _wrapped(module: nn.Module) -> bool:
    """A module whose forward must run whole: a ``torch.distributed`` wrapper, or a compiled module."""
    return any(
        c.__module__.startswith(("torch.distributed", "torch.nn.parallel", "torch._dynamo"))
        for c in type(module).__mro__
    )


PROBE_ROWS = 2  # the rows of the first batch whose forward shows where to cut, when it is worth a look


class ForwardCut:
    """Runs a census's forwards (``run(batch, model)``), each ending where a first forward showed that no
    site is left (:attr:`at`, ``None`` while uncut). That first forward is of the first batch's first
    :data:`PROBE_ROWS` rows when that is likely to cost less than it saves (the candidates after every site
    in the model's module order hold a larger share of its parameters than those rows are of the batch:
    GPT-2's ``lm_head``, not a classifier's head), and then the first batch is cut too (the caller's hooks
    see :attr:`probing` and count nothing of it); else of the first batch itself, run whole. Its hooks
    live on ``guard``."""

    def __init__(self, model: nn.Module, sites: tuple[Site, ...], guard: _Guard) -> None:
        self.model = model
        self.guard = guard
        self.at: str | None = None
        self.probing = False
        self._clock = 0
        self._last_site = -1
        self._starts: dict[str, list[int]] = {}
        self._first = True
        self._tail_share = 0.0
        self._handles: list[Any] = []
        self._observed = {_observed_at(s) for s in sites}
        self._seen: set[str] = set()  # the sites' observing modules seen by the first forward
        self._last_path = ""  # the one observed last
        found = candidates(model, sites)
        self._later = later_candidates(model, sites)
        found.update(self._later)
        if not found:
            self._first = False  # nothing to learn: every forward runs whole
            return
        modules = dict(model.named_modules())
        order = {name: i for i, name in enumerate(modules)}
        last = max((order[p] for p in _related(sites) if p in order), default=-1)
        # the share of the parameters in candidates after every site in module order (likely run after them):
        # a rough share of the forward the cut saves, against the probe's share of a batch (its rows)
        after = {id(p): p.numel() for path in found if order.get(path, -1) > last for p in found[path].parameters()}
        total = sum({id(p): p.numel() for p in model.parameters()}.values())
        self._tail_share = sum(after.values()) / total if total else 0.0
        for path, module in found.items():
            self._handles.append(module.register_forward_pre_hook(self._started(path)))
        for path in self._observed:
            if path in modules:
                self._handles.append(modules[path].register_forward_hook(self._site_done(path)))

    def _started(self, path: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            self._clock += 1
            self._starts.setdefault(path, []).append(self._clock)

        return hook

    def _site_done(self, path: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self._clock += 1
            self._last_site = self._clock
            self._last_path = path
            self._seen.add(path)

        return hook

    def run(self, batch: Batch, model: nn.Module) -> None:
        """``model``'s forward on ``batch``, for its hooks' sake (the output is dropped)."""
        if self._first and len(batch) > PROBE_ROWS and self._tail_share > PROBE_ROWS / len(batch):
            self._probe(batch, model)
        if not self._first:
            try:
                batch.call(model)
            except _Cut:
                pass
            return
        try:
            batch.call(model)
        finally:
            self._learned()

    def _probe(self, batch: Batch, model: nn.Module) -> None:
        """Learn the cut on the first rows of ``batch``; a model that cannot run on them (a fixed batch
        size) is learned on the whole first batch instead."""
        self.probing = True
        try:
            batch.rows(slice(0, PROBE_ROWS)).call(model)
        except Exception:  # noqa: BLE001 - the whole first batch decides instead
            self._clock, self._last_site, self._starts, self._seen = 0, -1, {}, set()
            return
        finally:
            self.probing = False
        self._learned()

    def _learned(self) -> None:
        self._first = False
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._decide()

    def _decide(self) -> None:
        """The cut: the first candidate to start after the last site was observed, and never before; else
        the first such later candidate inside a module holding the last site observed, when every site was."""
        if self._last_site < 0:
            return
        after = [(min(starts), path) for path, starts in self._starts.items() if min(starts) > self._last_site]
        first = [(start, path) for start, path in after if path not in self._later]
        if not first and self._seen == self._observed:
            holding = self._last_path.split(".")
            ancestors = {".".join(holding[:i]) for i in range(len(holding))}
            first = [(start, path) for start, path in after if path.rpartition(".")[0] in ancestors]
        if not first:
            return
        self.at = min(first)[1]
        module = self.model.get_submodule(self.at)
        self.guard.hook(module.register_forward_pre_hook(_stop))


def _stop(module: nn.Module, args: Any) -> None:
    raise _Cut
