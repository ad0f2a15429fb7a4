-- ngx.re: match, find, gmatch, sub and gsub over the Python matcher
-- (kongish.lua.pdk.regex), which returns {captures, spans, names}, nil on no
-- match, an error string for a pattern that does not compile, or
-- {raise = message} for unknown option letters.

local P = ...

local concat, find, format, sub = table.concat, string.find, string.format, string.sub
local error, pairs, pcall, tonumber, tostring, type = error, pairs, pcall, tonumber, tostring, type

local re = {}

local function subject_string(caller, subject)
  local kind = type(subject)
  if kind == "string" then return subject end
  if kind == "number" then return tostring(subject) end
  error(format("bad argument #1 to '%s' (string expected, got %s)", caller, kind), 3)
end

local function search(caller, subject, regex, options, position)
  if type(regex) ~= "string" then
    error(format("bad argument #2 to '%s' (string expected, got %s)", caller, type(regex)), 3)
  end
  local result = P.re_search(subject, regex, options or "", position)
  if type(result) == "string" then return nil, result end
  if result and result.raise then error(result.raise, 3) end
  return result
end

-- The captures table: [0] the whole match, [n] each group, plus named groups.
local function captures_table(result, into)
  local captures, m = result[1], into or {}
  m[0] = captures[1]
  for i = 2, #captures do m[i - 1] = captures[i] end
  for name, index in pairs(result[3]) do m[name] = captures[index + 1] end
  return m
end

local function match_end(result)
  return result[2][2]
end

function re.match(subject, regex, options, ctx, res_table)
  subject = subject_string("match", subject)
  local result, err = search("match", subject, regex, options, ctx and ctx.pos or 1)
  if err then return nil, err end
  if not result then return nil end
  if ctx then ctx.pos = match_end(result) + 1 end
  return captures_table(result, res_table)
end

function re.find(subject, regex, options, ctx, nth)
  subject = subject_string("find", subject)
  local result, err = search("find", subject, regex, options, ctx and ctx.pos or 1)
  if err then return nil, nil, err end
  if not result then return nil end
  if ctx then ctx.pos = match_end(result) + 1 end
  local spans = result[2]
  local group = (nth or 0) * 2 + 1
  if group > #spans or not spans[group] then return nil end
  return spans[group], spans[group + 1]
end

-- Where the next search starts: after the match, or one byte on after an
-- empty match so the loop always advances.
local function next_position(result)
  local from, to = result[2][1], result[2][2]
  if to < from then return from + 1 end
  return to + 1
end

function re.gmatch(subject, regex, options)
  subject = subject_string("gmatch", subject)
  local position, done = 1, false
  return function()
    if done or position > #subject + 1 then return nil end
    local result, err = search("gmatch", subject, regex, options, position)
    if not result then
      done = true
      return nil, err
    end
    position = next_position(result)
    return captures_table(result)
  end
end

-- "$0", "$1", "${1}", "${name}" and "$$" in a replacement template.
local function expand(template, m)
  local out, position = {}, 1
  while true do
    local dollar = find(template, "$", position, true)
    if not dollar then
      out[#out + 1] = sub(template, position)
      return concat(out)
    end
    out[#out + 1] = sub(template, position, dollar - 1)
    local name, after
    local nextc = sub(template, dollar + 1, dollar + 1)
    if nextc == "$" then
      out[#out + 1] = "$"
      position = dollar + 2
    else
      if nextc == "{" then
        local close = find(template, "}", dollar + 2, true)
        name = close and sub(template, dollar + 2, close - 1)
        after = close and close + 1
      else
        local _, stop = find(template, "^%d+", dollar + 1)
        name = stop and sub(template, dollar + 1, stop)
        after = stop and stop + 1
      end
      if not name or not find(name, "^[%w_]+$") then
        error("invalid capturing variable name", 0)
      end
      local value = m[tonumber(name) or name]
      out[#out + 1] = value or ""
      position = after
    end
  end
end

local function replacement(replace, m)
  if type(replace) == "function" then
    local value = replace(m)
    return value == nil and "" or tostring(value)
  end
  return expand(replace, m)
end

local function substitute(caller, subject, regex, replace, options, global)
  subject = subject_string(caller, subject)
  local kind = type(replace)
  if kind == "number" then
    replace = tostring(replace)
  elseif kind ~= "string" and kind ~= "function" then
    error(format("bad argument #3 to '%s' (string or function expected, got %s)", caller, kind), 3)
  end
  local out, position, count, copied = {}, 1, 0, 1
  while position <= #subject + 1 do
    local result, err = search(caller, subject, regex, options, position)
    if err then return nil, nil, err end
    if not result then break end
    local from, to = result[2][1], result[2][2]
    out[#out + 1] = sub(subject, copied, from - 1)
    local ok, value = pcall(replacement, replace, captures_table(result))
    if not ok then
      if type(replace) == "function" then error(value, 0) end
      return nil, nil, "failed to compile the replacement template"
    end
    out[#out + 1] = value
    copied = to + 1
    count = count + 1
    if not global then break end
    position = next_position(result)
  end
  out[#out + 1] = sub(subject, copied)
  return concat(out), count
end

function re.sub(subject, regex, replace, options)
  return substitute("sub", subject, regex, replace, options, false)
end

function re.gsub(subject, regex, replace, options)
  return substitute("gsub", subject, regex, replace, options, true)
end

return re
