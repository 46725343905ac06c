"""The search space of the norm kernels: Helion's config spec narrowed to what matters for row reductions.

A *point* is a dict of named parameters (what Optuna samples); :meth:`SearchSpace.to_config`
maps it to a dict usable as ``helion.Config(**d)``. Sizes are sampled as log2 exponents
so that samplers see them as ordered integers.

Forward (``norm_fwd``, block_sizes = [rows, group tile]):
  rows_log2      rows per program (block_sizes[0])
  chunk_log2     a chunk of the row per loop step; the top value means None (whole row
                 in registers). Offered only for wide rows.
  two_pass       (LayerNorm, when the row is chunked) walk the chunks with
                 ``norm_fwd_chunked`` (block_sizes = [chunk, rows, group tile]: two reads
                 of x) rather than Helion's reduction loop (reduction_loops[0] = chunk:
                 one read per reduction, three for LayerNorm)
  warps_log2     num_warps
  stages         num_stages: only when something loops (a chunked row, a persistent grid)
  eviction       one load eviction policy for every load ('' = Triton's default). The
                 training forward is not offered "first": the backward reads x again, and
                 a step that runs both on an input that fits the L2 finds it there unless
                 the forward marked it for early eviction (H200, fwd+bwd of the five
                 training forwards the tuner had given "first": 1-10% slower than the same
                 configs with "last", NOTES attempt 45)
  pid_type       flat (a 1-D grid whose program id is split into tile indices by a
                 runtime % and // over the row tiles), xyz (one grid axis per tiled dim:
                 no division, and M is no argument; H200 bf16 at the shipped configs:
                 forward +1-10% on most rows, -4% on one, backward -10..+0.3%, NOTES
                 attempt 33), or persistent (CUDA only: the persistent grid needs the SM count)
  sm_mult_log2   num_sm_multiplier of a persistent grid
  static         compile for the exact shape (Helion's static_shapes: M, the strides and
                 the grid are constants of the program) rather than for any M; a config
                 key of ours ("static": True), which kernels.launch honours only for the
                 shape the entry was tuned for (H200 bf16 at the shipped forward configs:
                 -2..+3.6%, LayerNorm 4096x8192 +1.9%, NOTES attempt 42)
  stream         mark the output stores evict-first in the L2 (PTX st.global.cs, Helion's
                 ``store_cache_modifiers``, which Helion 1.4 emits on any GPU but offers
                 only on AMD). Offered only where the output is larger than the L2
                 (``streaming``): there the next layer cannot find it in the L2 anyway,
                 whereas a smaller output marked this way would cost the next layer's read
                 what it saves here (H200 bf16 shipped inference configs: LayerNorm
                 2048x32768 +1.8%, 4096x16384 +0.8%, RMSNorm 4096x4096 +1.8%, most rows
                 within 0.5%, NOTES attempt 46)
  params_first   (``norm_fwd`` only) load the weight and bias before the row's statistics
                 rather than after them; a config key of ours (PARAMS_FIRST), a
                 compile-time argument of the kernel. Offered where the kernel's default
                 loads them after (all but a 16-bit RMSNorm weight): at decode sizes
                 their latency follows the reductions (NOTES attempt 48), on wide rows
                 holding them across the reductions spills (attempt 38)
  recast         (``norm_fwd`` holding the whole row, 16-bit input on CUDA, no gate before
                 the norm) hold the row in its 16-bit form between the passes and convert
                 it again for each; a config key of ours (RECAST). It buys registers
                 (LayerNorm bf16 4096x12800, 8 warps: 117-128 -> 78-80, three programs an SM
                 instead of two) for ~23% more instructions: H200 +11..+14% at
                 4096x12800-13824, -1..-36% where the registers did not bound the
                 programs per SM (NOTES attempt 66)
  read_only      (``norm_fwd_chunked`` on CUDA, static) the second pass reads x, the weight and
                 the bias by read-only loads (PTX ld.global.nc), which ptxas may issue
                 before the previous step's store; a config key of ours (READ_ONLY).
                 Offered where each thread's run of a chunk is at least 16 bytes (one
                 load a run): H200 bf16 4096 x 10752-15872 +1..+6% (NOTES attempt 73)

Backward (``norm_bwd``, block_sizes = [m_block, group tile, channel tile, inner]; the
positions are read from the config spec: the inner block is the one bounded by m_block):
  m_block_log2   rows per program; P = ceil(M / m_block) fp32 partial rows of dW/dB
  tile_k_log2    channels per program; the top value is the whole row (the fused
                 schedule), below it the split schedule (``norm_bwd_coef`` first, a
                 second read of x and dy). Offered for wide rows, and at decode sizes
                 (M <= DIRECT_SPLIT_MAX_M) from DIRECT_SPLIT_MIN_WIDTH channels: there a
                 channel tile over every row writes dW/dB itself, two launches in all
                 (inductor's structure: a dx kernel, a column sum), against the fused
                 schedule's backward and reduce (H200 bf16 8x8192 fwd+bwd 1.105x of
                 inductor's step, the fused schedule 0.925x; NOTES attempt 49)
  inner_log2     rows per step of the program's loop over its m_block rows
  exchange       (CUDA, rows padded to EXCHANGE_MIN_WIDTH channels or more, when
                 the channel tile is narrower than the row) the exchange schedule instead of the split
                 one: the channel tiles of a row form its sums from each other's partial
                 sums (no second read of x and dy; H200 bf16 RMSNorm 2048x32768 backward:
                 split 2295 GB/s, exchange 2761, with its row loop pipelined 3211; NOTES
                 attempts 55-56). A config key of ours (EXCHANGE), with the channel tile
                 first in the grid (Helion's ``loop_orders``) so a row's tiles are adjacent
                 programs; not with a persistent grid, whose programs walk tiles in turn.
  tile_first     (the fused schedule: one channel tile spans the row) the same loop order:
                 Helion's default grid takes the channel tile's index as the program id
                 divided by the row tiles' count, a runtime value, so Triton cannot see
                 that the tile's offset is 0 and keeps each lane's column and mask as
                 runtime values through the row loop; first in the grid, the index is the
                 program id modulo one tile, a constant. Offline (triton 3.6, sm_90),
                 LayerNorm bf16 on a 16384-wide tile at 16 warps: 76 spilled bytes -> 0 on
                 rows 9216-12288; but some narrow rows' shipped configs spill with it
                 (4096x1024, 4 warps: 0 -> 116), so it is a choice (NOTES attempt 63).
  widen          (bf16 on CUDA) convert the loaded bf16 values to fp32 by bit moves
                 (``norm_kernels._f32``) rather than Triton's conversion, which takes a
                 byte permute more for the high value of each pair; a config key of ours
                 (WIDEN). Fewer instructions (offline, LayerNorm 4096x12800 on the 16384
                 tile: 1952 -> 1864 SASS), but some programs at 255 registers spill with
                 it: H200 shipped configs 0.57-1.04x (NOTES attempt 76)
  recast         (the fused schedule, 16-bit input on CUDA, no gate) hold x, dy and the
                 weight in their 16-bit registers across the row sums and convert them
                 again for dx (RECAST, as for the forward). Offline (triton 3.6, sm_90),
                 LayerNorm fp16 4096x16384: 80 spilled bytes at 8 warps and 64 at 16 ->
                 none, for ~40% more instructions a row; H200 LayerNorm backwards
                 1.05-1.17x at 4096 x 14336-16384, 0.72-0.99x where nothing spilled
                 (NOTES attempt 78)
  trim           (rows that are not a power of two) the fused schedule pins its padded
                 tile's dead lanes to constant zeros, so the compiler drops their
                 arithmetic (TRIM, a key of ours; ignored by the split and exchange
                 schedules). Offline (triton 3.6, sm_90), LayerNorm bf16 on the 16384
                 tile: 4096x8704 1193 -> 897 SASS instructions a row, 4096x12800 1289 ->
                 1160 and 64 spilled bytes -> 0; but lanes dead in some threads only pay
                 a select each: H200 shipped configs 0.83-1.19x (NOTES attempt 77)
  row_stages     software pipelining of that loop (its ``range_num_stages``: Triton
                 prefetches the next steps' rows while this one reduces); 0 = off.
                 Offered when Helion's config spec has the knob for the loop.
  warps_log2, stages, eviction, pid_type, sm_mult_log2 as above. No reduction loop.

The group tile (block_sizes[1]) stays 1. Points that cannot be good are pruned before
any compile (:meth:`SearchSpace.invalid_reason`): inner > m_block, tiles past
next_pow2(M), more than MAX_VALUES_PER_THREAD fp32 values per thread (spills), a tile
so small that some warps would hold no value, too many partial rows.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

from tuning.cache import EXCHANGE, OUR_KEYS, PARAMS_FIRST, READ_ONLY, RECAST, STATIC, TRIM, WIDEN

SPACE_VERSION = 20  # part of every study name: change it when parameters change meaning

MAX_ROWS_FWD = 128
MAX_INNER_BWD = 16
# fp32 values one program holds: past these the kernels spill badly on current GPUs.
MAX_TILE_VALUES_FWD = 32768
MAX_TILE_VALUES_BWD = 16384
MAX_VALUES_PER_THREAD = 128
# Rows narrower than this never gain from walking the row in chunks.
MIN_LOOP_WIDTH = 4096
MAX_CHUNK_STEPS_LOG2 = 4  # chunks as small as 1/16 of the row
# Rows narrower than this keep their dW/dB accumulators in registers: no split backward.
MIN_SPLIT_WIDTH = 8192
# ... but at decode sizes the split writes dW/dB from one program per channel tile.
DIRECT_SPLIT_MAX_M = 64
DIRECT_SPLIT_MIN_WIDTH = 1024
# Rows this wide (padded to a power of two) are offered the exchange backward, as they
# are the split one. Attempt 55 measured it behind the fused schedule at 16384 and the
# split at LayerNorm 12288, but before its row loop could be pipelined (56) and while
# LayerNorm's exchange spilled (57); TritonBench's LayerNorm rows 8704-15872 run the fused
# schedule with up to 47% of a 16384-wide tile masked, or the split one.
EXCHANGE_MIN_WIDTH = MIN_SPLIT_WIDTH
# The backward's tile loop with its channel tile first (loop order [k, g, m]).
CHANNEL_TILE_FIRST = [[2, 1, 0]]
MAX_PARTIAL_ROWS = 2048
MAX_WARPS_LOG2 = 5
STAGES = (1, 2, 3)
ROW_STAGES = (0, 2, 3, 4)
MAX_SM_MULT_LOG2 = 3
THREADS_PER_WARP = 32
PERSISTENT = ("persistent_blocked", "persistent_interleaved")
STREAMING_STORE = ".cs"
# Stores a forward of the family makes at most (out, the residual sum, mean, rstd): the
# length of a streaming config's store list, whatever the binding (Helion reads the
# entries it has stores for and ignores the rest).
MAX_FWD_STORES = 4


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def log2i(n: int) -> int:
    return int(math.log2(n))


@dataclass(frozen=True)
class IntParam:
    name: str
    low: int
    high: int

    def values(self) -> list:
        return list(range(self.low, self.high + 1))

    def suggest(self, trial) -> int:
        return trial.suggest_int(self.name, self.low, self.high)

    def contains(self, value: object) -> bool:
        return isinstance(value, int) and self.low <= value <= self.high

    def steps(self, value: int) -> list:
        """The values one step from ``value``."""
        return [v for v in (value - 1, value + 1) if self.contains(v)]


@dataclass(frozen=True)
class ChoiceParam:
    name: str
    choices: tuple

    def values(self) -> list:
        return list(self.choices)

    def suggest(self, trial) -> object:
        return trial.suggest_categorical(self.name, list(self.choices))

    def contains(self, value: object) -> bool:
        return value in self.choices

    def steps(self, value: object) -> list:
        """The values one step from ``value``: a yes/no flipped, a number's neighbours in
        order, any other choice of a name (an eviction policy, a pid type)."""
        choices = list(self.choices)
        if all(isinstance(c, bool) for c in choices):
            return [not value]
        if all(isinstance(c, int) for c in choices):
            i = choices.index(value)
            return choices[max(0, i - 1) : i] + choices[i + 1 : i + 2]
        return [c for c in choices if c != value]


class SearchSpace:
    """The tunable parameters of one kernel (fwd or bwd) for one [M, G, K] problem."""

    def __init__(
        self,
        mode: str,
        m: int,
        k: int,
        *,
        n_block_sizes: int,
        n_reduction_loops: int,
        n_loads: int,
        evictions: tuple[str, ...],
        pid_types: tuple[str, ...],
        inner_index: int | None = None,
        tile_index: int | None = None,
        chunked: bool = False,
        n_ranges: int = 0,
        row_range: int | None = None,
        streaming: bool = False,
        params_first: bool = False,
        exchange: bool = False,
        tile_first: bool = False,
        recast: bool = False,
        read_only: int = 0,
        widen: bool = False,
        trim: bool = False,
    ) -> None:
        if mode not in ("fwd", "bwd"):
            raise ValueError(f"mode must be 'fwd' or 'bwd', got {mode!r}")
        self.mode, self.m, self.k = mode, m, k
        self.kp = next_pow2(k)
        self.n_block_sizes = n_block_sizes
        self.n_reduction_loops = n_reduction_loops
        self.n_loads = n_loads
        self.chunked = chunked
        # Backward block positions (see from_spec); the fwd uses block 0 only.
        self.inner_index = n_block_sizes - 1 if inner_index is None else inner_index
        self.tile_index = tile_index
        # The config's range_num_stages list (one entry per device loop) and the entry
        # of the backward's row loop, when Helion offers the knob.
        self.n_ranges, self.row_range = n_ranges, row_range
        self.static = mode == "fwd"  # compile for the exact shape: a forward choice
        self.streaming = streaming and mode == "fwd"
        self.params_first = params_first and mode == "fwd"
        self.recast = recast
        # The element size of the row read by read-only loads (0: not offered).
        self.read_only = read_only if mode == "fwd" and chunked else 0
        self.exchange = exchange and mode == "bwd" and self.kp >= EXCHANGE_MIN_WIDTH
        self.tile_first = tile_first and mode == "bwd"
        self.widen = widen and mode == "bwd"
        self.trim = trim and mode == "bwd"
        self.params = self._params(evictions, pid_types)
        self.by_name = {p.name: p for p in self.params}

    @classmethod
    def from_spec(
        cls, mode: str, m: int, k: int, spec, device_type: str, n_loads: int | None = None,
        chunked: bool = False, training: bool = False, streaming: bool = False,
        params_first: bool = False, recast: bool = False, read_only: int = 0, widen: bool = False,
        trim: bool = False,
    ) -> SearchSpace:
        """The space for a kernel bound to real arguments (``bound.config_spec``).

        ``n_loads``: the length of the eviction-policy list when it must cover another
        binding too (the split backward, the chunked forward); Helion ignores surplus
        entries. ``chunked``: offer ``norm_fwd_chunked`` for chunked rows. ``training``:
        a training forward, whose input the backward reads again (no "first" eviction).
        ``streaming``: the forward's output is larger than the L2 (offer ``stream``).
        ``params_first``: the forward's default loads the weight and bias after the
        statistics (offer ``params_first``). ``recast``: the forward can hold the row,
        or the fused backward x, dy and the weight, in their 16-bit form (offer
        ``recast``). ``read_only``: the element size of a row the two-pass forward can
        read by read-only loads (0: not offered). ``widen``: the backward's loads are bf16
        on CUDA (offer ``widen``). ``trim``: the backward's row is not a power of two
        (offer ``trim``). A backward whose kernel takes ``loop_orders``
        is offered ``tile_first``, and on CUDA the exchange schedule (on rows from
        EXCHANGE_MIN_WIDTH).
        """
        evictions = tuple(spec.load_eviction_policies.inner.choices)
        if training:
            evictions = tuple(e for e in evictions if e != "first")
        pid_types = ("flat",) + tuple(p for p in ("xyz",) if p in spec.allowed_pid_types)
        if device_type == "cuda":
            pid_types += tuple(p for p in PERSISTENT if p in spec.allowed_pid_types)
        inner_index, tile_index = _bwd_block_positions(spec) if mode == "bwd" else (None, None)
        row_range = _row_range(spec, inner_index) if mode == "bwd" else None
        return cls(
            mode, m, k,
            n_block_sizes=len(spec.block_sizes),
            n_reduction_loops=len(spec.reduction_loops),
            n_loads=max(spec.load_eviction_policies.length, n_loads or 0),
            evictions=evictions,
            pid_types=pid_types,
            inner_index=inner_index,
            tile_index=tile_index,
            chunked=chunked and mode == "fwd",
            n_ranges=len(spec.range_num_stages),
            row_range=row_range,
            streaming=streaming,
            params_first=params_first,
            recast=recast,
            read_only=read_only,
            widen=widen,
            trim=trim,
            exchange=device_type == "cuda" and len(spec.loop_orders) == 1,
            tile_first=len(spec.loop_orders) == 1,
        )  # fmt: skip

    # ------------------------------------------------------------------ parameters

    def _params(self, evictions: tuple[str, ...], pid_types: tuple[str, ...]) -> list:
        rows_cap = log2i(next_pow2(self.m))
        if self.mode == "fwd":
            params = [IntParam("rows_log2", 0, min(rows_cap, log2i(MAX_ROWS_FWD)))]
            if self.can_loop:
                top = log2i(self.kp)
                params.append(IntParam("chunk_log2", max(0, top - MAX_CHUNK_STEPS_LOG2), top))
                if self.chunked:
                    params.append(ChoiceParam("two_pass", (False, True)))
        else:
            fewest = log2i(next_pow2(-(-self.m // MAX_PARTIAL_ROWS)))
            params = [IntParam("m_block_log2", min(fewest, rows_cap), rows_cap)]
            if self.can_split:
                top = log2i(self.kp)
                params.append(IntParam("tile_k_log2", max(0, top - MAX_CHUNK_STEPS_LOG2), top))
                if self.exchange:
                    params.append(ChoiceParam("exchange", (False, True)))
            if self.tile_first:
                params.append(ChoiceParam("tile_first", (False, True)))
            params.append(IntParam("inner_log2", 0, min(rows_cap, log2i(MAX_INNER_BWD))))
            if self.row_range is not None:
                params.append(ChoiceParam("row_stages", ROW_STAGES))
            if self.widen:
                params.append(ChoiceParam("widen", (False, True)))
            if self.trim:
                params.append(ChoiceParam("trim", (False, True)))
        params.append(IntParam("warps_log2", 0, MAX_WARPS_LOG2))
        if self.n_loads and len(evictions) > 1:
            params.append(ChoiceParam("eviction", evictions))
        if len(pid_types) > 1:
            params.append(ChoiceParam("pid_type", pid_types))
        if any(p in PERSISTENT for p in pid_types):
            params.append(IntParam("sm_mult_log2", 0, MAX_SM_MULT_LOG2))
        if self.static:
            params.append(ChoiceParam("static", (False, True)))
        if self.streaming:
            params.append(ChoiceParam("stream", (False, True)))
        if self.params_first:
            params.append(ChoiceParam("params_first", (False, True)))
        if self.recast:
            params.append(ChoiceParam("recast", (False, True)))
        if self.read_only:
            params.append(ChoiceParam("read_only", (False, True)))
        # Last: whether stages matter depends on the chunk and the pid type sampled above.
        params.append(ChoiceParam("stages", STAGES))
        return params

    @property
    def can_loop(self) -> bool:
        return self.mode == "fwd" and self.n_reduction_loops > 0 and self.kp >= MIN_LOOP_WIDTH

    @property
    def can_split(self) -> bool:
        wide = self.kp >= MIN_SPLIT_WIDTH
        decode = self.m <= DIRECT_SPLIT_MAX_M and self.kp >= DIRECT_SPLIT_MIN_WIDTH
        return self.mode == "bwd" and self.tile_index is not None and (wide or decode)

    def _channel_tile(self, point: dict) -> int:
        return 1 << point.get("tile_k_log2", log2i(self.kp))

    def _stages_matter(self, point: dict) -> bool:
        """num_stages only pipelines loops: the bwd row loop, a chunked row, a persistent grid."""
        return self.mode == "bwd" or self._looped(point) or point.get("pid_type", "flat") in PERSISTENT

    def _looped(self, point: dict) -> bool:
        return self.can_loop and point.get("chunk_log2", log2i(self.kp)) < log2i(self.kp)

    def _can_recast(self, point: dict) -> bool:
        """Whether the sampled kernel can take ``recast``: a forward holding the whole
        row, a backward whose channel tile spans it (the fused schedule)."""
        if self.mode == "fwd":
            return not self._looped(point)
        return self._channel_tile(point) >= self.kp

    def _two_pass(self, point: dict) -> bool:
        return self._looped(point) and bool(point.get("two_pass", False))

    def _active(self, name: str, point: dict) -> bool:
        if name == "two_pass":
            return self._looped(point)
        if name == "stages":
            return self._stages_matter(point)
        if name == "sm_mult_log2":
            return point.get("pid_type", "flat") in PERSISTENT
        if name == "params_first":
            return not self._two_pass(point)
        if name == "recast":
            return self._can_recast(point)
        if name == "read_only":
            return self._two_pass(point) and bool(point.get("static", False))
        if name == "exchange":
            return self._channel_tile(point) < self.kp
        if name == "tile_first":
            return self._channel_tile(point) >= self.kp
        return True

    def suggest(self, trial) -> dict:
        """Sample a point with Optuna's define-by-run API (conditional parameters included)."""
        point: dict = {}
        for param in self.params:
            if self._active(param.name, point):
                point[param.name] = param.suggest(trial)
        return point

    def neighbours(self, point: dict) -> list[dict]:
        """The valid points one step away from ``point`` (one parameter changed, see each
        parameter's ``steps``). A parameter the step makes inactive is dropped (two_pass
        once the row is whole); one it makes active takes its first, plainest value
        (stages 1, no two-pass, multiplier 1), which a later step may change."""
        steps = [
            {**point, param.name: other}
            for param in self.params
            if param.name in point
            for other in param.steps(point[param.name])
        ]
        found: dict[tuple, dict] = {}
        for step in steps:
            full: dict = {}
            for param in self.params:
                if self._active(param.name, full):
                    full[param.name] = step.get(param.name, param.values()[0])
            if full != point and self.invalid_reason(full) is None:
                found.setdefault(tuple(sorted(full.items())), full)
        return list(found.values())

    def grid(self) -> dict[str, list]:
        """Every parameter's values, for optuna.samplers.GridSampler."""
        return {p.name: p.values() for p in self.params}

    def points(self) -> Iterator[dict]:
        """Every distinct valid point (conditional parameters only where active)."""
        seen = set()
        for values in itertools.product(*(p.values() for p in self.params)):
            full = dict(zip(self.by_name, values))
            point = {name: v for name, v in full.items() if self._active(name, full)}
            key = tuple(sorted(point.items()))
            if key not in seen and self.invalid_reason(point) is None:
                seen.add(key)
                yield point

    # ------------------------------------------------------------------- validity

    def _tile(self, point: dict) -> tuple[int, int]:
        """(rows, columns) of the tile one program holds in registers at a time."""
        if self.mode == "fwd":
            width = self.kp
            if self.can_loop:
                width = 1 << point.get("chunk_log2", log2i(self.kp))
            return 1 << point["rows_log2"], width
        return 1 << point["inner_log2"], self._channel_tile(point)

    def invalid_reason(self, point: dict) -> str | None:
        """Why a sampled point is not worth compiling, or None if it is."""
        for name, value in point.items():
            param = self.by_name.get(name)
            if param is None or not param.contains(value):
                return f"{name}={value!r} is outside the space"
        rows, width = self._tile(point)
        # The two-pass forward holds two such tiles: the sums of u - P and of its square.
        values = rows * width * (2 if self._two_pass(point) else 1)
        threads = THREADS_PER_WARP << point["warps_log2"]
        if self.mode == "bwd":
            if point["inner_log2"] > point["m_block_log2"]:
                return "inner rows exceed m_block"
            if point.get("exchange", False) and point.get("pid_type", "flat") in PERSISTENT:
                return "the exchange schedule needs a row's channel tiles running together"
            if values > max(width, MAX_TILE_VALUES_BWD):
                return f"{values} values per tile exceed {MAX_TILE_VALUES_BWD}"
        elif values > MAX_TILE_VALUES_FWD:
            return f"{values} values per tile exceed {MAX_TILE_VALUES_FWD}"
        if values > MAX_VALUES_PER_THREAD * threads:
            return f"{values // threads} values per thread would spill"
        if point["warps_log2"] > 0 and values < threads:
            return "more threads than values in the tile"
        if point.get("read_only", False) and width * self.read_only < 16 * threads:
            return "read-only loads need 16 bytes of the chunk a thread"
        return None

    # ------------------------------------------------------------- point <-> config

    def to_config(self, point: dict) -> dict:
        """The Helion config (``helion.Config(**d)``) of a point."""
        sizes = [1] * self.n_block_sizes
        if self.mode == "fwd":
            sizes[0] = 1 << point["rows_log2"]
        else:
            sizes[0] = 1 << point["m_block_log2"]
            sizes[self.inner_index] = 1 << point["inner_log2"]
            if self.tile_index is not None:
                sizes[self.tile_index] = self._channel_tile(point)
        config: dict = {"block_sizes": sizes}
        if self._two_pass(point):
            config["block_sizes"] = [1 << point["chunk_log2"], sizes[0], 1]
        elif self.mode == "fwd" and self.n_reduction_loops:
            chunk = 1 << point["chunk_log2"] if self._looped(point) else None
            config["reduction_loops"] = [chunk] * self.n_reduction_loops
        config["num_warps"] = 1 << point["warps_log2"]
        config["num_stages"] = point.get("stages", 1)
        eviction = point.get("eviction", "")
        if eviction:
            config["load_eviction_policies"] = [eviction] * self.n_loads
        if point.get("row_stages", 0):
            stages = [0] * self.n_ranges
            stages[self.row_range] = point["row_stages"]
            config["range_num_stages"] = stages
        pid_type = point.get("pid_type", "flat")
        if pid_type != "flat":
            config["pid_type"] = pid_type
            if point.get("sm_mult_log2", 0):
                config["num_sm_multiplier"] = 1 << point["sm_mult_log2"]
        if point.get("static", False):
            config[STATIC] = True
        if point.get("stream", False):
            config["store_cache_modifiers"] = [STREAMING_STORE] * MAX_FWD_STORES
        if point.get("params_first", False) and not self._two_pass(point):
            config[PARAMS_FIRST] = True
        if point.get("recast", False) and self._can_recast(point):
            config[RECAST] = True
        if point.get("read_only", False) and self._two_pass(point) and point.get("static", False):
            config[READ_ONLY] = True
        if point.get("exchange", False):
            config[EXCHANGE] = True
        if point.get("widen", False):
            config[WIDEN] = True
        if point.get("trim", False):
            config[TRIM] = True
        if point.get("exchange", False) or point.get("tile_first", False):
            config["loop_orders"] = CHANNEL_TILE_FIRST
        return config

    def from_config(self, config: dict) -> dict | None:
        """The point whose config is ``config`` (a heuristic, cached or Helion default one), or None.

        Fields outside SPACE_KEYS are ignored; None when a searched field's value is not
        in the space (e.g. a block size past next_pow2(M), per-load eviction policies).
        """
        evictions = config.get("load_eviction_policies")
        if evictions and len(set(evictions)) == 1:
            # One policy for every load is the same point whatever the kernel's load count
            # (a training forward's config seeds an inference study, whose kernel loads less).
            config = {**config, "load_eviction_policies": [evictions[0]] * self.n_loads}
        stores = config.get("store_cache_modifiers")
        if stores and set(stores) == {STREAMING_STORE}:
            config = {**config, "store_cache_modifiers": [STREAMING_STORE] * MAX_FWD_STORES}
        try:
            point = self._parse(config)
        except (KeyError, TypeError, ValueError, IndexError):
            return None
        point = {name: v for name, v in point.items() if name in self.by_name and self._active(name, point)}
        if any(not self.by_name[n].contains(v) for n, v in point.items()):
            return None
        return point if canonical(self.to_config(point)) == canonical(config, SPACE_KEYS) else None

    def _parse(self, config: dict) -> dict:
        sizes = config["block_sizes"]
        point: dict = {}
        if self.mode == "fwd" and len(sizes) == 3:
            point["chunk_log2"], point["rows_log2"] = _exact_log2(sizes[0]), _exact_log2(sizes[1])
            point["two_pass"] = True
        elif self.mode == "fwd":
            point["rows_log2"] = _exact_log2(sizes[0])
            loops = config.get("reduction_loops") or [None]
            point["chunk_log2"] = log2i(self.kp) if loops[0] is None else _exact_log2(loops[0])
            point["two_pass"] = False
        else:
            point["m_block_log2"] = _exact_log2(sizes[0])
            point["inner_log2"] = _exact_log2(sizes[self.inner_index])
            if self.tile_index is not None:
                point["tile_k_log2"] = min(_exact_log2(sizes[self.tile_index]), log2i(self.kp))
            ranges = config.get("range_num_stages") or []
            if any(s for i, s in enumerate(ranges) if i != self.row_range):
                raise ValueError("only the row loop's range_num_stages is in the space")
            if self.row_range is not None and self.row_range < len(ranges):
                point["row_stages"] = ranges[self.row_range]
            else:
                point["row_stages"] = 0
        point["warps_log2"] = _exact_log2(config.get("num_warps", 4))
        point["stages"] = config.get("num_stages", 1)
        evictions = set(config.get("load_eviction_policies") or [""])
        if len(evictions) != 1:
            raise ValueError("per-load eviction policies are not in the space")
        point["eviction"] = evictions.pop()
        point["pid_type"] = config.get("pid_type", "flat")
        point["sm_mult_log2"] = _exact_log2(config.get("num_sm_multiplier", 1))
        point["static"] = bool(config.get(STATIC, False))
        stores = set(config.get("store_cache_modifiers") or [""])
        if not stores <= {"", STREAMING_STORE} or len(stores) != 1:
            raise ValueError("only one streaming modifier for every store is in the space")
        point["stream"] = stores == {STREAMING_STORE}
        point["params_first"] = bool(config.get(PARAMS_FIRST, False))
        point["recast"] = bool(config.get(RECAST, False))
        point["read_only"] = bool(config.get(READ_ONLY, False))
        point["exchange"] = bool(config.get(EXCHANGE, False))
        point["widen"] = bool(config.get(WIDEN, False))
        point["trim"] = bool(config.get(TRIM, False))
        orders = [list(order) for order in config.get("loop_orders") or []]
        if all(order == sorted(order) for order in orders):
            orders = None  # Helion's default: every loop in its written order
        if orders not in (None, CHANNEL_TILE_FIRST) or point["exchange"] and orders is None:
            raise ValueError("loop orders other than the channel tile first are not in the space")
        point["tile_first"] = orders is not None and not point["exchange"]
        return point


def _bwd_block_positions(spec) -> tuple[int, int | None]:  # noqa: ANN001
    """(inner rows, channel tile) indices in the backward's block_sizes.

    The inner block is the one bounded by block 0 (``hl.tile(tile_mo.begin, tile_mo.end)``);
    a channel tile, if the kernel has one, is any other block after the group tile.
    """
    blocks = list(spec.block_sizes)
    outer = blocks[0].block_ids[0]
    inner = next(i for i, b in enumerate(blocks) if b.bounded_by_block_id == outer)
    tiles = [i for i in range(2, len(blocks)) if i != inner]
    return inner, (tiles[0] if tiles else None)


def _row_range(spec, inner_index: int) -> int | None:  # noqa: ANN001
    """The entry of ``range_num_stages`` that pipelines the backward's row loop (the loop
    over the inner block), or None where Helion does not offer the knob."""
    inner_id = list(spec.block_sizes)[inner_index].block_ids[0]
    return next((i for i, r in enumerate(spec.range_num_stages) if inner_id in r.block_ids), None)


def _exact_log2(n: int) -> int:
    if not isinstance(n, int) or n < 1 or n & (n - 1):
        raise ValueError(f"{n!r} is not a power of two")
    return log2i(n)


# The config fields this space decides; others (indexing, l2_groupings, ...) stay at
# Helion's defaults. OUR_KEYS (STATIC, PARAMS_FIRST) are ours, not Helion's (see
# kernels.launch.fwd_kernel_name and params_first).
SPACE_KEYS = (
    "block_sizes", "reduction_loops", "num_warps", "num_stages",
    "load_eviction_policies", "pid_type", "num_sm_multiplier", "range_num_stages",
    "store_cache_modifiers", "loop_orders", *OUR_KEYS,
)  # fmt: skip


def canonical(config: dict, keys: tuple[str, ...] | None = None) -> dict:
    """``config`` (restricted to ``keys``) without fields at their defaults, so equal configs compare equal."""
    out = {k: v for k, v in config.items() if keys is None or k in keys}
    if not any(out.get("reduction_loops") or []):
        out.pop("reduction_loops", None)
    if out.get("num_stages") == 1:
        out.pop("num_stages")
    if not any(out.get("load_eviction_policies") or []):
        out.pop("load_eviction_policies", None)
    if out.get("pid_type") == "flat":
        out.pop("pid_type")
    if out.get("num_sm_multiplier") == 1:
        out.pop("num_sm_multiplier")
    if not any(out.get("range_num_stages") or []):
        out.pop("range_num_stages", None)
    if not out.get(STATIC, True):
        out.pop(STATIC)
    if not any(out.get("store_cache_modifiers") or []):
        out.pop("store_cache_modifiers", None)
    if not out.get(EXCHANGE, True):
        out.pop(EXCHANGE)
    if not out.get(WIDEN, True):
        out.pop(WIDEN)
    if not out.get(TRIM, True):
        out.pop(TRIM)
    if all(list(order) == sorted(order) for order in out.get("loop_orders") or []):
        out.pop("loop_orders", None)  # every loop in its written order: Helion's default
    return out


def describe(config: dict, mode: str) -> str:
    """A short label of a config for tables: 'rows=4 w=8 loop=- s=1' and the like
    (``mode``: a cache mode; both forwards label alike)."""
    sizes = config["block_sizes"]
    forward = mode != "bwd"
    if forward and len(sizes) == 3:
        parts = [f"rows={sizes[1]}", f"two-pass={sizes[0]}"]
    elif forward:
        loop = (config.get("reduction_loops") or [None])[0]
        parts = [f"rows={sizes[0]}", f"loop={loop or '-'}"]
    else:
        parts = [f"mb={sizes[0]}"] + ([f"tile={sizes[2]}"] if len(sizes) > 3 else []) + [f"in={sizes[-1]}"]
    parts += [f"w={config.get('num_warps', 4)}", f"s={config.get('num_stages', 1)}"]
    row_stages = max(config.get("range_num_stages") or [0])
    if row_stages:
        parts.append(f"rs={row_stages}")
    evictions = [e for e in config.get("load_eviction_policies") or [] if e]
    if evictions:
        parts.append(f"ev={evictions[0]}")
    pid_type = config.get("pid_type", "flat")
    if pid_type in PERSISTENT:
        parts.append(f"{pid_type.replace('persistent_', 'p-')}x{config.get('num_sm_multiplier', 1)}")
    elif pid_type != "flat":
        parts.append(pid_type)
    if config.get(STATIC):
        parts.append("static")
    if any(config.get("store_cache_modifiers") or []):
        parts.append("st=cs")
    if config.get(PARAMS_FIRST):
        parts.append("wb-first")
    if config.get(RECAST):
        parts.append("recast")
    if config.get(READ_ONLY):
        parts.append("nc")
    if config.get(EXCHANGE):
        parts.append("exchange")
    elif config.get("loop_orders") == CHANNEL_TILE_FIRST:
        parts.append("k-first")
    if config.get(WIDEN):
        parts.append("widen")
    if config.get(TRIM):
        parts.append("trim")
    return " ".join(parts)
