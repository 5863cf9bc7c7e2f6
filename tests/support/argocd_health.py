"""Run Argo CD health scripts (manifests/argocd/health/*.lua) in a real Lua 5.1, sandboxed like Argo CD."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lupa import lua51

ROOT = Path(__file__).resolve().parents[2]
HEALTH_DIR = ROOT / "manifests" / "argocd" / "health"


# Base-library functions gopher-lua offers to Argo CD scripts; `table` and a safe `os` come on top.
SANDBOX = """
local base = {"assert", "error", "ipairs", "next", "pairs", "pcall", "print", "rawequal", "rawget",
              "rawset", "select", "setmetatable", "getmetatable", "tonumber", "tostring", "type",
              "unpack", "xpcall"}
-- Argo CD does not open the string library: ("x"):upper() must fail here as it does there.
getmetatable("").__index = nil
return function(source, name, obj)
  local chunk, err = loadstring(source, "=" .. name)
  if chunk == nil then error(err) end
  local env = {obj = obj, table = table, os = {time = os.time, date = os.date, clock = os.clock}}
  for _, fn in ipairs(base) do env[fn] = _G[fn] end
  setfenv(chunk, env)
  return chunk()
end
"""


class HealthRunner:
    """Runs one health script against an object in a fresh Lua 5.1 state per call."""

    def __call__(self, script: str, obj: dict[str, Any], name: str = "health.lua") -> dict[str, Any]:
        lua = lua51.LuaRuntime()
        run = lua.execute(SANDBOX)
        result = run(script, name, _to_lua(lua, obj))
        return {"status": result["status"], "message": result["message"]}


def _to_lua(lua: Any, value: Any) -> Any:
    """JSON-like Python value -> Lua value the way Argo CD converts objects (arrays 1-based, null = nil)."""
    if isinstance(value, dict):
        table = lua.table()
        for key, item in value.items():
            if item is not None:
                table[key] = _to_lua(lua, item)
        return table
    if isinstance(value, list):
        table = lua.table()
        for index, item in enumerate(value, start=1):
            table[index] = _to_lua(lua, item)
        return table
    return value


def health_scripts() -> dict[str, Path]:
    """`<group>_<Kind>` -> script path."""
    return {path.stem: path for path in sorted(HEALTH_DIR.glob("*.lua"))}


def script_for(obj: dict[str, Any]) -> str:
    group = obj["apiVersion"].split("/")[0]
    return health_scripts()[f"{group}_{obj['kind']}"].read_text()
