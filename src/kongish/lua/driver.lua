-- The Lua half of kongish's Lua engine (the Python half is engine.py).
--
-- Requests run in pooled worker coroutines. Python drives a run with
-- ``step``, one call per resume: it arms the budget, resumes the worker,
-- clears the hook and answers what the worker yielded. A worker yields DONE
-- or FAILED when its function has finished, AWAIT when the PDK waits for a
-- Deferred, STOP when the PDK ends the phase (ngx.exit, kong.response.exit).
-- The signals are Python objects, so Lua code cannot forge them.
--
-- The budget (instructions and CPU time) is a count hook. LuaJIT keeps one
-- hook for the whole VM, so ``step`` arms it just before resuming a worker
-- and clears it just after. Over budget, the hook fails every instruction,
-- ``step``'s own too: the error then reaches Python, which clears the hook
-- with the raw C debug.sethook (running no Lua) and then asks why.
--
-- LuaJIT has no limit of its own on C calls that call back into Lua (nested
-- coroutine.resume, string.gsub and table.sort with Lua callbacks): enough of
-- them overflow the C stack and kill the process. The guarded versions here
-- count them per run and stop at Lua 5.1's limit with its "C stack overflow".

local AWAIT, STOP, DONE, FAILED, INSTRUCTIONS_EXCEEDED, TIME_EXCEEDED,
      MEMORY_LIMIT, MEMORY_EXCEEDED = ...

local co_create, co_resume, co_status, co_yield =
  coroutine.create, coroutine.resume, coroutine.status, coroutine.yield
local sethook, traceback, clock = debug.sethook, debug.traceback, os.clock
local collectgarbage, getfenv = collectgarbage, getfenv
local error, next, pairs, pcall, rawequal, select, setmetatable, tostring, type, xpcall =
  error, next, pairs, pcall, rawequal, select, setmetatable, tostring, type, xpcall

-- Count hooks do not fire inside JIT-compiled traces, so the budget needs the interpreter.
jit.off()
jit.flush()

-- No Lua code may reach Python through lupa's helper module, and nobody needs bytecode.
python = nil
package.loaded.python = nil
string.dump = nil

-- Budget ---------------------------------------------------------------------

-- Instructions between two hook calls: small enough to notice a loop of slow C
-- calls quickly, large enough that the hook costs little.
local STEP = 1000

-- Lua 5.1's LUAI_MAXCCALLS; a few hundred gsub callbacks deep overflow an 8 MiB C stack.
local MAX_NESTING = 200

local budget = {left = 0, deadline = 0, exceeded = nil, nesting = 0}

-- Once over budget, every instruction fails, so a pcall that catches the first
-- error cannot keep the code running.
local function fail_every_instruction()
  error(budget.exceeded, 0)
end

-- Ends the run: also for the PDK, when code goes over a limit kept in Python.
local function exceed(message)
  budget.exceeded = message
  sethook(fail_every_instruction, "", 1)
  error(message, 0)
end

-- Lua code is held to MEMORY_LIMIT (bytes, in collectgarbage's count); the
-- allocator's cap is higher, so that the PDK always has room (see memory.py).
local function over_memory_limit()
  return collectgarbage("count") * 1024 > MEMORY_LIMIT
end

local function count_instructions()
  local left = budget.left - STEP
  budget.left = left
  if left <= 0 then
    return exceed(INSTRUCTIONS_EXCEEDED)
  end
  if clock() > budget.deadline then
    return exceed(TIME_EXCEEDED)
  end
  if over_memory_limit() then
    return exceed(MEMORY_EXCEEDED)
  end
end

-- After a call that may have taken long (PDK work, C work on large inputs):
-- the hook alone would let a loop run up to STEP such calls past the budget.
local function charge(...)
  if clock() > budget.deadline then
    exceed(TIME_EXCEEDED)
  end
  return ...
end

-- The PDK's Python primitives, each entered only under the memory limit; the
-- ``charged`` ones (work proportional to their input: hashes, codecs, regexes)
-- are charged for their time as they return. A CPU-clock reading costs a
-- system call, so the cheap ones are left to the hook.
local function guard_primitives(primitives, charged)
  for name, primitive in pairs(primitives) do
    if charged[name] then
      primitives[name] = function(...)
        if over_memory_limit() then
          exceed(MEMORY_EXCEEDED)
        end
        return charge(primitive(...))
      end
    else
      primitives[name] = function(...)
        if over_memory_limit() then
          exceed(MEMORY_EXCEEDED)
        end
        return primitive(...)
      end
    end
  end
  return primitives
end

-- Inputs from which a C library call is worth a clock reading after it.
local LARGE = 4096

local function large(value)
  if type(value) == "string" then
    return #value >= LARGE
  end
  return type(value) == "table" and #value >= LARGE
end

-- ``c_function`` charged for its time whenever its first argument is a large
-- string or array (string methods, table.sort, table.concat), or it repeats
-- (``string.rep`` by its count).
local function metered(c_function)
  return function(first, second, ...)
    if large(first) or (type(second) == "number" and second >= LARGE) then
      return charge(c_function(first, second, ...))
    end
    return c_function(first, second, ...)
  end
end

-- The phase of the request being served, for the PDK without a call to Python.
local running_phase

-- Before each resume; ``deadline`` is in os.clock() seconds, ``nesting`` the
-- run's guarded C calls still on its stack.
local function arm(instructions, deadline, nesting, phase)
  budget.left = instructions
  budget.deadline = deadline
  budget.exceeded = nil
  budget.nesting = nesting
  running_phase = phase
  sethook(count_instructions, "", instructions < STEP and instructions or STEP)
end

local function phase()
  return running_phase
end

-- Why the last ``step`` failed, if over a limit: for Python, after it has cleared the hook.
local function limit_exceeded()
  return budget.exceeded
end

-- What was left of the budget when the last ``step`` failed, for the run's cost.
local function instructions_left()
  return budget.left
end

-- C stack guard -----------------------------------------------------------------

local function nest()
  local nesting = budget.nesting
  if nesting >= MAX_NESTING then
    error("C stack overflow", 3)
  end
  budget.nesting = nesting + 1
end

local function unnest(ok, ...)
  budget.nesting = budget.nesting - 1
  if ok then
    return ...
  end
  error((...), 0)
end

-- ``c_function`` with its C-stack nesting counted whenever argument
-- ``position`` is a Lua function it will call back.
local function guard_callbacks(c_function, position)
  return function(...)
    if type((select(position, ...))) ~= "function" then
      return c_function(...)
    end
    nest()
    return unnest(pcall(c_function, ...))
  end
end

-- A message handler runs inside the hook when the hook raised the error, where
-- no hook fires: skip user handlers then, or they could loop forever unmetered.
local function guarded_xpcall(fn, handler, ...)
  if type(handler) ~= "function" then
    return xpcall(fn, handler, ...)
  end
  return xpcall(fn, function(err)
    if budget.exceeded then
      return err
    end
    return handler(err)
  end, ...)
end

-- Workers --------------------------------------------------------------------

-- Idle workers kept for reuse; bursts beyond this make (and then drop) more.
local IDLE_WORKERS = 64

local workers = setmetatable({}, {__mode = "k"})
-- Allocated in full now: parking a worker must not need memory, since a run
-- may have left the VM at its allocator cap.
local idle, idle_count = require("table.new")(IDLE_WORKERS, 0), 0

-- LuaJIT calls no message handler for memory errors, hence the reset before each call.
local failure_traceback

local function describe_failure(err)
  failure_traceback = traceback("", 2)
  return tostring(err)
end

-- Runs one function per resume; over budget, the error leaves the worker.
local function worker(fn)
  while true do
    failure_traceback = nil
    local ok, err = xpcall(fn, describe_failure)
    if ok then
      fn = co_yield(DONE)
    else
      fn = co_yield(FAILED, err, failure_traceback)
    end
  end
end

local function take_worker()
  if idle_count == 0 then
    local co = co_create(worker)
    workers[co] = true
    return co
  end
  local co = idle[idle_count]
  idle[idle_count] = nil
  idle_count = idle_count - 1
  return co
end

local function park(co)
  if idle_count < IDLE_WORKERS then
    idle[idle_count + 1] = co
    idle_count = idle_count + 1
  end
end

-- What ``step`` answers, once the hook is off, with the instructions left of the
-- run's budget. A waiting worker goes to Python with the rest of the budget too;
-- a finished one goes back to the pool; a stopped one (suspended in user code)
-- or a dead one is dropped.
local function answer(co, ok, signal, ...)
  sethook()
  if not ok then
    return FAILED, budget.left, tostring(signal), ""
  end
  if rawequal(signal, AWAIT) then
    return AWAIT, co, budget.left, budget.nesting, ...
  end
  if rawequal(signal, DONE) or rawequal(signal, FAILED) then
    park(co)
  end
  return signal, budget.left, ...
end

-- One resume, in one call from Python: ``co`` is a waiting worker (nil takes
-- an idle one), ``...`` its function to run or the answer it waits for.
local function step(co, instructions, deadline, nesting, phase, ...)
  arm(instructions, deadline, nesting, phase)
  co = co or take_worker()
  return answer(co, co_resume(co, ...))
end

-- (true, values...) gives the values; (false, err) raises err.
local function values_or_error(ok, ...)
  if ok then
    return ...
  end
  error((...), 0)
end

-- What the PDK calls. Python resumes the worker with (true, values...) or (false, message).
local function await(pyfunc, ...)
  return values_or_error(co_yield(AWAIT, pyfunc, ...))
end

local function stop()
  return co_yield(STOP)
end

-- User coroutines: pass PDK signals through to the worker, so ngx.sleep and
-- ngx.exit work inside coroutine.wrap too, and never let user code resume a
-- worker (that would run another request's code in this one).
local function forward(co, ok, signal, ...)
  if ok and (rawequal(signal, AWAIT) or rawequal(signal, STOP)) and co_status(co) == "suspended" then
    return forward(co, co_resume(co, co_yield(signal, ...)))
  end
  return ok, signal, ...
end

local function resume(co, ...)
  if workers[co] then
    return false, "cannot resume non-suspended coroutine"
  end
  if budget.nesting >= MAX_NESTING then
    return false, "C stack overflow"
  end
  budget.nesting = budget.nesting + 1
  return unnest(true, forward(co, co_resume(co, ...)))
end

local function wrap(fn)
  local co = co_create(fn)
  return function(...)
    return values_or_error(resume(co, ...))
  end
end

-- Phases ---------------------------------------------------------------------

-- Kong's pre-function handler: a chunk runs on its first call; if it returns a
-- function, that function replaces it from then on (keeping its upvalues) and
-- runs at once. A first call that exits early leaves the chunk in place.
--
-- ``reset(runner)`` puts a runner's chunks back as they were loaded, with the
-- globals they had then: what their runs kept (globals, a returned function's
-- upvalues) becomes garbage. The engine does this to code that left the VM
-- over its memory limit.
local resets = setmetatable({}, {__mode = "k"})

local function copy(t)
  local c = {}
  for k, v in pairs(t) do
    c[k] = v
  end
  return c
end

local function phase_runner(chunks)
  local calls, restores = {}, {}
  for i = 1, #chunks do
    local chunk = chunks[i]
    local environment = getfenv(chunk)
    local loaded_globals = copy(environment)
    local first_run_started = false
    local function first_call()
      if first_run_started then
        calls[i] = chunk
        return chunk()
      end
      first_run_started = true
      local result = chunk()
      if type(result) == "function" then
        chunk = result
        calls[i] = chunk
        return chunk()
      end
      calls[i] = chunk
    end
    calls[i] = first_call
    restores[i] = function()
      for name in next, environment do
        environment[name] = nil
      end
      for name, value in pairs(loaded_globals) do
        environment[name] = value
      end
      chunk, first_run_started, calls[i] = chunks[i], false, first_call
    end
  end
  local function runner()
    for i = 1, #calls do
      calls[i]()
    end
  end
  resets[runner] = restores
  return runner
end

local function reset(runner)
  for _, restore in pairs(resets[runner] or {}) do
    restore()
  end
end

return {
  step = step,
  limit_exceeded = limit_exceeded,
  instructions_left = instructions_left,
  exceed = exceed,
  phase = phase,
  await = await,
  stop = stop,
  xpcall = guarded_xpcall,
  coroutine = {resume = resume, wrap = wrap},
  guard_callbacks = guard_callbacks,
  metered = metered,
  phase_runner = phase_runner,
  reset = reset,
  guard_primitives = guard_primitives,
}
