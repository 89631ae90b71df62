"""Rolling windows and concurrency slots shared by every instance, in Redis.

Per key, three sorted sets and two hashes (one hash slot, ``{key_id}``):

- ``u``: each billed request, by request id, scored by when it was settled; ``uv`` its cost and
  tokens. Exact entries, not buckets: a request counts in a window of length ``L`` while
  ``now < t + L``, and ``retry-after`` is when enough of them have aged out.
- ``f``: requests in flight, scored by their hold's expiry (a crashed instance's entries age
  out with its holds); ``fv`` their holds.
- ``gone``: requests released without billing in the last hour, so a rebuild never revives them.
- ``ok``: set once the key's state has been loaded from the database.

Admission is one Lua script (check every cap, then take the slot), so instances never decide on
the same numbers. When ``ok`` is missing (a Redis restart, or a key not seen for a while) the
instance that notices rebuilds the key from PostgreSQL: usage records and open holds, skipping
requests Redis already knows were settled or released.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from bytespike.billing import limits as lim
from bytespike.store import ledger as books
from bytespike.store.db import Database
from bytespike.store.redis import RedisLink, Unreachable

log = logging.getLogger("bytespike.billing.shared")

MISSED_MAX = 100_000
"""Settlements kept for replay while Redis is unreachable (the oldest are dropped beyond this)."""

_LUA_COMMON = """
local function fmt(x) return string.format('%.6f', x) end
local function hdel_all(key, list)
  for i = 1, #list, 500 do redis.call('HDEL', key, unpack(list, i, math.min(i + 499, #list))) end
end
"""

_ADMIT = _LUA_COMMON + """
-- KEYS: u uv f fv ok; ARGV: now rid hold expires maxc longest ttl nwin [seconds usd req tok]...
local now = tonumber(ARGV[1])
local rid = ARGV[2]
local hold = tonumber(ARGV[3])
local maxc = tonumber(ARGV[5])
local longest = tonumber(ARGV[6])
local ttl = ARGV[7]
local nwin = tonumber(ARGV[8])
if redis.call('EXISTS', KEYS[5]) == 0 then return {-1} end
local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', fmt(now))
if #dead > 0 then hdel_all(KEYS[4], dead); redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', fmt(now)) end
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', fmt(now - longest))
if #old > 0 then hdel_all(KEYS[2], old); redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now - longest)) end
local maxsec = 0
for w = 0, nwin - 1 do
  local s = tonumber(ARGV[9 + 4 * w]); if s > maxsec then maxsec = s end
end
local rows = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. fmt(now - maxsec), '+inf', 'WITHSCORES')
local n = #rows / 2
local ts, cu, cr, ck = {}, {[0] = 0}, {[0] = 0}, {[0] = 0}
local names = {}
for i = 1, n do names[i] = rows[2 * i - 1]; ts[i] = tonumber(rows[2 * i]) end
for i = 1, n, 500 do
  local vals = redis.call('HMGET', KEYS[2], unpack(names, i, math.min(i + 499, n)))
  for j = 1, #vals do
    local k = i + j - 1
    local c, t = 0, 0
    if vals[j] then
      local a, b = string.match(vals[j], '(%d+) (%d+)')
      c, t = tonumber(a), tonumber(b)
    end
    cu[k] = cu[k - 1] + c; cr[k] = cr[k - 1] + 1; ck[k] = ck[k - 1] + t
  end
end
local held = 0
for _, v in ipairs(redis.call('HVALS', KEYS[4])) do held = held + tonumber(v) end
local inflight = redis.call('ZCARD', KEYS[3])
local function wait(start, s, cum, cap, open, need)
  local target = cap - open - need
  if target < 0 then target = math.max(cap - need, 0) end
  local total = cum[n]
  if total - cum[start - 1] <= target then return 1 end
  for j = start, n do
    if total - cum[j] <= target then return math.max(1, math.ceil(ts[j] + s - now)) end
  end
  return math.max(1, math.ceil(ts[n] + s - now))
end
local refused, rwin, rreason, rwait = false, -1, 3, 0
if maxc >= 0 and inflight + 1 > maxc then refused, rwin, rreason, rwait = true, -1, 3, 1 end
local out = {}
for w = 0, nwin - 1 do
  local s = tonumber(ARGV[9 + 4 * w])
  local caps = {tonumber(ARGV[10 + 4 * w]), tonumber(ARGV[11 + 4 * w]), tonumber(ARGV[12 + 4 * w])}
  local start = n + 1
  for i = 1, n do if ts[i] > now - s then start = i; break end end
  local used = {cu[n] - cu[start - 1], cr[n] - cr[start - 1], ck[n] - ck[start - 1]}
  local opens = {held, inflight, 0}
  local needs = {hold, 1, 1}
  local cums = {cu, cr, ck}
  if rid ~= '' then
    for d = 1, 3 do
      local cap = caps[d]
      if cap >= 0 and used[d] + opens[d] + needs[d] > cap then
        local wt = wait(start, s, cums[d], cap, opens[d], needs[d])
        if not refused or wt > rwait then refused, rwin, rreason, rwait = true, w, d - 1, wt end
      end
    end
  end
  local oldest, newest = -1, -1
  if start <= n then oldest = math.floor(ts[start] * 1000); newest = math.floor(ts[n] * 1000) end
  table.insert(out, used[1]); table.insert(out, used[2]); table.insert(out, used[3])
  table.insert(out, oldest); table.insert(out, newest)
end
local ok = 1
if refused then ok = 0
elseif rid ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[4], rid); redis.call('HSET', KEYS[4], rid, ARGV[3])
  held = held + hold; inflight = inflight + 1
end
for i = 1, 5 do redis.call('EXPIRE', KEYS[i], ttl) end
local res = {ok, rwin, rreason, rwait, held, inflight}
for _, v in ipairs(out) do table.insert(res, v) end
return res
"""

_LOAD = """
-- KEYS: u uv f fv ok gone; ARGV: ttl nu [rid t "cost tokens"]... nh [rid expires amount]...
if redis.call('EXISTS', KEYS[5]) == 1 then return 0 end
local i = 3
for _ = 1, tonumber(ARGV[2]) do
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i]); redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2]); i = i + 3
end
local nh = tonumber(ARGV[i]); i = i + 1
for _ = 1, nh do
  local r = ARGV[i]
  if not redis.call('ZSCORE', KEYS[1], r) and not redis.call('ZSCORE', KEYS[6], r) then
    redis.call('ZADD', KEYS[3], ARGV[i + 1], r); redis.call('HSET', KEYS[4], r, ARGV[i + 2])
  end
  i = i + 3
end
redis.call('SET', KEYS[5], '1')
for k = 1, 6 do redis.call('EXPIRE', KEYS[k], ARGV[1]) end
return 1
"""

_SETTLE = """
-- KEYS: u uv f fv gone; ARGV: rid now billable "cost tokens" ttl
redis.call('ZREM', KEYS[3], ARGV[1]); redis.call('HDEL', KEYS[4], ARGV[1])
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1]); redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[5]); redis.call('EXPIRE', KEYS[2], ARGV[5])
else
  redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', string.format('%.6f', tonumber(ARGV[2]) - 3600))
  redis.call('EXPIRE', KEYS[5], 3600)
end
return 1
"""

_REASONS: tuple[lim.Reason, ...] = ("usd", "requests", "tokens", "concurrency")


@dataclass(frozen=True, slots=True)
class SharedView:
    """A key's windows as Redis showed them at one moment (headers and ``GET /v1/usage``)."""

    specs: tuple[lim.WindowSpec, ...]
    states: tuple[lim.WindowState, ...]

    def snapshot(self, now: float) -> list[lim.WindowState]:
        return list(self.states)

    def usd_headroom(self, now: float) -> int | None:
        room = [w.usd_remaining for w in self.states if w.usd_remaining is not None]
        return min(room) if room else None


@dataclass(frozen=True, slots=True)
class _Missed:
    key_id: str
    request_id: str
    at: float
    billable: bool
    cost: int
    tokens: int


def _keys(key_id: str) -> list[str]:
    base = f"bytespike:lim:{{{key_id}}}:"
    return [base + n for n in ("u", "uv", "f", "fv", "ok", "gone")]


class SharedLimits:
    """Admission and settlement of limits in Redis; see the module's docstring."""

    def __init__(self, link: RedisLink, db: Database, hold_seconds: float) -> None:
        self.link = link
        self.db = db
        self.hold_seconds = hold_seconds
        r = link.redis
        self._admit = r.register_script(_ADMIT)
        self._load = r.register_script(_LOAD)
        self._settle = r.register_script(_SETTLE)
        self._missed: deque[_Missed] = deque()
        link.on_recover.append(self.replay)

    def _ttl(self, specs: Sequence[lim.WindowSpec]) -> int:
        return int(max((s.seconds for s in specs), default=0) + self.hold_seconds + 3600)

    async def admit(self, key_id: str, specs: Sequence[lim.WindowSpec], max_concurrency: int | None,
                    request_id: str, hold: int, now: float, expires_at: float) -> lim.Refused | SharedView:
        """Take a slot for ``request_id`` holding ``hold`` or say why not; raises Unreachable."""
        capped = tuple(s for s in specs if s.usd is not None or s.requests is not None or s.tokens is not None)
        args: list[str | int | float] = [
            f"{now:.6f}", request_id, hold, f"{expires_at:.6f}", -1 if max_concurrency is None else max_concurrency,
            max((s.seconds for s in specs), default=0), self._ttl(specs), len(capped)]
        for s in capped:
            args += [s.seconds, _cap(s.usd), _cap(s.requests), _cap(s.tokens)]
        keys = _keys(key_id)[:5]
        for _ in range(3):
            res = await self.link.call(lambda r: self._admit(keys=keys, args=args, client=r))
            if int(res[0]) != -1:
                break
            await self._rebuild(key_id, specs, now)
        else:
            raise Unreachable("Redis keeps losing this key's state")
        ok, win, reason, wait, held, inflight = (int(x) for x in res[:6])
        if not ok:
            return lim.Refused("concurrency" if win < 0 else capped[win].name, _REASONS[reason], wait)
        return _view(capped, [int(x) for x in res[6:]], held, inflight)

    async def view(self, key_id: str, specs: Sequence[lim.WindowSpec], max_concurrency: int | None,
                   now: float) -> SharedView:
        """Every window of the key (capped or not), taking nothing."""
        args: list[str | int | float] = [f"{now:.6f}", "", 0, "0", -1, max((s.seconds for s in specs), default=0),
                                         self._ttl(specs), len(specs)]
        for s in specs:
            args += [s.seconds, _cap(s.usd), _cap(s.requests), _cap(s.tokens)]
        keys = _keys(key_id)[:5]
        for _ in range(3):
            res = await self.link.call(lambda r: self._admit(keys=keys, args=args, client=r))
            if int(res[0]) != -1:
                return _view(tuple(specs), [int(x) for x in res[6:]], int(res[4]), int(res[5]))
            await self._rebuild(key_id, specs, now)
        raise Unreachable("Redis keeps losing this key's state")

    async def settle(self, key_id: str, request_id: str, now: float, billable: bool, cost: int, tokens: int,
                     specs: Sequence[lim.WindowSpec]) -> None:
        """Free the slot and, if billed, count the request; kept for replay while Redis is away."""
        m = _Missed(key_id, request_id, now, billable, cost, tokens)
        try:
            await self._write(m, self._ttl(specs))
        except Unreachable:
            self.remember(m)

    def remember(self, m: _Missed) -> None:
        if len(self._missed) >= MISSED_MAX:
            dropped = self._missed.popleft()
            log.error("more than %d settlements waiting for Redis; dropped %s", MISSED_MAX, dropped.request_id)
        self._missed.append(m)

    def missed(self, key_id: str, request_id: str, now: float, billable: bool, cost: int, tokens: int) -> None:
        """A request served while Redis was unreachable: count it once Redis is back."""
        self.remember(_Missed(key_id, request_id, now, billable, cost, tokens))

    async def _write(self, m: _Missed, ttl: int) -> None:
        keys = _keys(m.key_id)
        await self.link.call(lambda r: self._settle(
            keys=[keys[0], keys[1], keys[2], keys[3], keys[5]],
            args=[m.request_id, f"{m.at:.6f}", "1" if m.billable else "0", f"{m.cost} {m.tokens}", ttl], client=r))

    async def replay(self) -> None:
        """After an outage: write the settlements Redis missed (idempotent: entries are by request id)."""
        n = len(self._missed)
        while self._missed:
            m = self._missed[0]
            await self._write(m, int(7 * 86400 + self.hold_seconds + 3600))
            self._missed.popleft()
        if n:
            log.warning("replayed %d settlement(s) made while Redis was unreachable", n)

    async def written(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Settlements now in the database: drop their slots in case a rebuild brought them back."""
        if not pairs or not self.link.up:
            return

        async def go(r: Redis) -> None:
            pipe = r.pipeline(transaction=False)
            for key_id, rid in pairs:
                k = _keys(key_id)
                pipe.zrem(k[2], rid)
                pipe.hdel(k[3], rid)
            await pipe.execute()

        try:
            await self.link.call(go)
        except Unreachable:
            pass  # those slots expire with their holds

    async def _rebuild(self, key_id: str, specs: Sequence[lim.WindowSpec], now: float) -> None:
        longest = max((s.seconds for s in specs), default=0)
        async with self.db.read() as conn:
            usage = await books.key_usage(conn, key_id, now - longest)
            held = await books.key_holds(conn, key_id, now)
        args: list[str | int] = [self._ttl(specs), len(usage)]
        for rid, t, cost, tokens in usage:
            args += [rid, f"{t:.6f}", f"{cost} {tokens}"]
        args.append(len(held))
        for rid, expires, amount in held:
            args += [rid, f"{expires:.6f}", amount]
        keys = _keys(key_id)
        if await self.link.call(lambda r: self._load(keys=keys, args=args, client=r)):
            log.info("rebuilt the limits of key %s from the database", key_id)


def _cap(v: int | None) -> int:
    return -1 if v is None else v


def _view(specs: Sequence[lim.WindowSpec], flat: list[int], held: int, inflight: int) -> SharedView:
    states = []
    for i, s in enumerate(specs):
        usd, req, tok, oldest, newest = flat[5 * i:5 * i + 5]
        states.append(lim.WindowState(
            name=s.name, seconds=s.seconds, usd_used=usd, usd_held=held, usd_cap=s.usd,
            usd_remaining=None if s.usd is None else max(s.usd - usd - held, 0),
            requests_used=req, requests_in_flight=inflight, requests_cap=s.requests,
            requests_remaining=None if s.requests is None else max(s.requests - req - inflight, 0),
            tokens_used=tok, tokens_cap=s.tokens,
            tokens_remaining=None if s.tokens is None else max(s.tokens - tok, 0),
            resets_at=oldest / 1000 + s.seconds if oldest >= 0 else None,
            clears_at=newest / 1000 + s.seconds if newest >= 0 else None,
        ))
    return SharedView(tuple(specs), tuple(states))
