-- lua-cjson (OpenResty flavour) in plain Lua: same output, same error messages.
--
-- Pure Lua keeps every string byte-exact (no trip through Python) and lets
-- user code call cjson without leaving the VM.  Returns a constructor: each
-- call gives an independent (cjson, cjson.safe) pair, as cjson.new() does.

local byte, char, find, format, gsub, sub =
  string.byte, string.char, string.find, string.format, string.gsub, string.sub
local concat, floor, huge = table.concat, math.floor, math.huge
local getmetatable, setmetatable, pairs, pcall, error, type, tonumber, tostring, select =
  getmetatable, setmetatable, pairs, pcall, error, type, tonumber, tostring, select
local newproxy = newproxy

-- cjson.null and cjson.empty_array are light userdata in OpenResty; a proxy
-- userdata is the closest Lua can make, printed the same way.
local null = newproxy(true)
getmetatable(null).__tostring = function() return "userdata: NULL" end
local empty_array = newproxy(false)

local array_mt = {__name = "cjson.array"}
local empty_array_mt = {__name = "cjson.empty_array"}

local ESCAPES = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["/"] = "\\/",
  ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}
for code = 0, 31 do
  local c = char(code)
  ESCAPES[c] = ESCAPES[c] or format("\\u%04x", code)
end
ESCAPES["\127"] = "\\u007f"

local function new_instance()
  local cfg = {
    empty_table_as_object = true,
    escape_slash = true,
    precision = 14,
    sparse_convert = false, sparse_ratio = 2, sparse_safe = 10,
    encode_max_depth = 1000, decode_max_depth = 1000,
    encode_invalid_numbers = false, decode_invalid_numbers = true,
    decode_array_with_array_mt = false,
  }
  local number_format = "%.14g"
  local string_pattern = '[%c"\\/\127]'

  local function fail(value, reason)
    error(format("Cannot serialise %s: %s", type(value), reason), 0)
  end

  local function encode_number(n)
    if n ~= n or n == huge or n == -huge then
      if not cfg.encode_invalid_numbers then
        fail(n, "must not be NaN or Infinity")
      elseif cfg.encode_invalid_numbers == "null" then
        return "null"
      end
      return n ~= n and "nan" or (n > 0 and "inf" or "-inf")
    end
    return format(number_format, n)
  end

  local function encode_string(s)
    return '"' .. gsub(s, string_pattern, ESCAPES) .. '"'
  end

  -- Positive length when t is an array, 0 when empty, -1 when an object.
  local function array_length(t)
    local max, items = 0, 0
    for k in pairs(t) do
      if type(k) == "number" and k >= 1 and floor(k) == k then
        if k > max then max = k end
        items = items + 1
      else
        return -1
      end
    end
    if cfg.sparse_ratio > 0 and max > items * cfg.sparse_ratio and max > cfg.sparse_safe then
      if not cfg.sparse_convert then fail(t, "excessively sparse array") end
      return -1
    end
    return max
  end

  local encode_value

  local function encode_table(t, depth, out)
    depth = depth + 1
    if depth > cfg.encode_max_depth then
      error(format("Cannot serialise, excessive nesting (%d)", depth), 0)
    end
    local mt = getmetatable(t)
    local length
    if mt == array_mt then
      length = #t
    else
      length = array_length(t)
      if length == 0 and mt ~= empty_array_mt and cfg.empty_table_as_object then
        length = -1
      end
    end
    if length >= 0 then
      out[#out + 1] = "["
      for i = 1, length do
        if i > 1 then out[#out + 1] = "," end
        encode_value(t[i], depth, out)
      end
      out[#out + 1] = "]"
      return
    end
    out[#out + 1] = "{"
    local first = true
    for k, v in pairs(t) do
      local key
      if type(k) == "string" then
        key = encode_string(k)
      elseif type(k) == "number" then
        key = '"' .. encode_number(k) .. '"'
      else
        fail(k, "table key must be a number or string")
      end
      if not first then out[#out + 1] = "," end
      first = false
      out[#out + 1] = key
      out[#out + 1] = ":"
      encode_value(v, depth, out)
    end
    out[#out + 1] = "}"
  end

  function encode_value(v, depth, out)
    local kind = type(v)
    if kind == "string" then
      out[#out + 1] = encode_string(v)
    elseif kind == "number" then
      out[#out + 1] = encode_number(v)
    elseif kind == "boolean" then
      out[#out + 1] = v and "true" or "false"
    elseif kind == "nil" or v == null then
      out[#out + 1] = "null"
    elseif v == empty_array then
      out[#out + 1] = "[]"
    elseif kind == "table" then
      encode_table(v, depth, out)
    else
      fail(v, "type not supported")
    end
  end

  local function encode(...)
    if select("#", ...) ~= 1 then
      error("bad argument #1 to 'encode' (expected 1 argument)", 2)
    end
    local out = {}
    encode_value((...), 0, out)
    return concat(out)
  end

  -- Decoding ----------------------------------------------------------------

  local WHITESPACE = {[32] = true, [9] = true, [10] = true, [13] = true}
  local SIMPLE_ESCAPES = {
    [34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f",
    [110] = "\n", [114] = "\r", [116] = "\t",
  }

  local function parse_error(expected, found, position)
    error(format("Expected %s but found %s at character %d", expected, found, position), 0)
  end

  local function utf8_char(code)
    if code < 0x80 then return char(code) end
    if code < 0x800 then
      return char(0xC0 + floor(code / 0x40), 0x80 + code % 0x40)
    end
    if code < 0x10000 then
      return char(0xE0 + floor(code / 0x1000), 0x80 + floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
    end
    return char(0xF0 + floor(code / 0x40000), 0x80 + floor(code / 0x1000) % 0x40,
                0x80 + floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
  end

  -- Each token is returned as (kind, value, start, next_position); errors are
  -- tokens of kind "error" whose value is cjson's description.
  local function read_string(text, start)
    local parts, position = {}, start + 1
    while true do
      local stop = find(text, '["\\]', position)
      if not stop then return "error", "unexpected end of string", start end
      parts[#parts + 1] = sub(text, position, stop - 1)
      if byte(text, stop) == 34 then
        return "T_STRING", concat(parts), start, stop + 1
      end
      local code = byte(text, stop + 1)
      if code == 117 then
        local high = tonumber(sub(text, stop + 2, stop + 5), 16)
        if not high or not find(sub(text, stop + 2, stop + 5), "^%x%x%x%x$") then
          return "error", "invalid unicode escape code", start
        end
        position = stop + 6
        if high >= 0xDC00 and high <= 0xDFFF then
          return "error", "invalid unicode escape code", start
        elseif high >= 0xD800 and high <= 0xDBFF then
          local low_text = sub(text, stop + 6, stop + 11)
          local low = find(low_text, "^\\u%x%x%x%x$") and tonumber(sub(low_text, 3), 16)
          if not low or low < 0xDC00 or low > 0xDFFF then
            return "error", "invalid unicode escape code", start
          end
          high = 0x10000 + (high - 0xD800) * 0x400 + (low - 0xDC00)
          position = stop + 12
        end
        parts[#parts + 1] = utf8_char(high)
      elseif SIMPLE_ESCAPES[code] then
        parts[#parts + 1] = SIMPLE_ESCAPES[code]
        position = stop + 2
      else
        return "error", "invalid escape code", start
      end
    end
  end

  local function read_number(text, start)
    local first, second = byte(text, start, start + 1)
    if first == 45 then second = byte(text, start + 2) end
    local digit = first == 45 and byte(text, start + 1) or first
    if digit == 48 and second and (second == 120 or second == 88 or (second >= 48 and second <= 57)) then
      return "error", "invalid number", start
    end
    local _, stop = find(text, "^-?%d+%.?%d*", start)
    if not stop then
      if cfg.decode_invalid_numbers then
        local word_start, word_stop = find(text, "^-?[IiNn][NnAa][FfNn]", start)
        if word_start then
          local word = sub(text, word_start, word_stop):lower()
          local value = find(word, "nan") and 0 / 0 or (first == 45 and -huge or huge)
          local _, inf_stop = find(text, "^inity", word_stop + 1)
          return "T_NUMBER", value, start, (inf_stop or word_stop) + 1
        end
      end
      return "error", "invalid number", start
    end
    local _, exponent_stop = find(text, "^[eE][-+]?%d+", stop + 1)
    stop = exponent_stop or stop
    return "T_NUMBER", tonumber(sub(text, start, stop)), start, stop + 1
  end

  local LITERALS = {[116] = {"true", true}, [102] = {"false", false}, [110] = {"null", null}}
  local PUNCTUATION = {
    [123] = "T_OBJ_BEGIN", [125] = "T_OBJ_END", [91] = "T_ARR_BEGIN",
    [93] = "T_ARR_END", [58] = "T_COLON", [44] = "T_COMMA",
  }

  local function next_token(text, position)
    local code = byte(text, position)
    while code and WHITESPACE[code] do
      position = position + 1
      code = byte(text, position)
    end
    if not code then return "T_END", nil, position, position end
    if PUNCTUATION[code] then return PUNCTUATION[code], nil, position, position + 1 end
    if code == 34 then return read_string(text, position) end
    if code == 45 or (code >= 48 and code <= 57) then return read_number(text, position) end
    local literal = LITERALS[code]
    if literal and sub(text, position, position + #literal[1] - 1) == literal[1] then
      return literal[1] == "null" and "T_NULL" or "T_BOOLEAN", literal[2], position, position + #literal[1]
    end
    if cfg.decode_invalid_numbers and (code == 73 or code == 105 or code == 78 or code == 110) then
      return read_number(text, position)
    end
    return "error", "invalid token", position
  end

  local function expect_failed(expected, kind, value, start)
    parse_error(expected, kind == "error" and value or kind, start)
  end

  local parse_value

  local function parse_object(text, position, depth)
    local result = {}
    local kind, value, start, after = next_token(text, position)
    if kind == "T_OBJ_END" then return result, after end
    while true do
      if kind ~= "T_STRING" then expect_failed("object key string", kind, value, start) end
      local key = value
      kind, value, start, after = next_token(text, after)
      if kind ~= "T_COLON" then expect_failed("colon", kind, value, start) end
      result[key], after = parse_value(text, after, depth, "value")
      kind, value, start, after = next_token(text, after)
      if kind == "T_OBJ_END" then return result, after end
      if kind ~= "T_COMMA" then expect_failed("comma or object end", kind, value, start) end
      kind, value, start, after = next_token(text, after)
    end
  end

  local function parse_array(text, position, depth)
    local result, length = {}, 0
    if cfg.decode_array_with_array_mt then setmetatable(result, array_mt) end
    local kind, _, _, after = next_token(text, position)
    if kind == "T_ARR_END" then return result, after end
    after = position
    while true do
      length = length + 1
      result[length], after = parse_value(text, after, depth, "value")
      local value, start
      kind, value, start, after = next_token(text, after)
      if kind == "T_ARR_END" then return result, after end
      if kind ~= "T_COMMA" then expect_failed("comma or array end", kind, value, start) end
    end
  end

  function parse_value(text, position, depth, expected)
    local kind, value, start, after = next_token(text, position)
    if kind == "T_OBJ_BEGIN" or kind == "T_ARR_BEGIN" then
      depth = depth + 1
      if depth > cfg.decode_max_depth then
        error(format("Found too many nested data structures (%d) at character %d", depth, start), 0)
      end
      if kind == "T_OBJ_BEGIN" then return parse_object(text, after, depth) end
      return parse_array(text, after, depth)
    end
    if kind == "T_STRING" or kind == "T_NUMBER" or kind == "T_BOOLEAN" or kind == "T_NULL" then
      return value, after
    end
    expect_failed(expected, kind, value, start)
  end

  local function decode(text)
    local kind = type(text)
    if kind == "number" then
      text = tostring(text)
    elseif kind ~= "string" then
      error(format("bad argument #1 to 'decode' (string expected, got %s)", kind), 2)
    end
    local value, after = parse_value(text, 1, 0, "value")
    local end_kind, end_value, end_start = next_token(text, after)
    if end_kind ~= "T_END" then expect_failed("the end", end_kind, end_value, end_start) end
    return value
  end

  -- Configuration ------------------------------------------------------------

  local function toggle(name)
    return function(setting)
      if setting ~= nil then
        cfg[name] = setting == true or setting == "on" or setting == 1
      end
      return cfg[name]
    end
  end

  local module = {
    null = null,
    empty_array = empty_array,
    array_mt = array_mt,
    empty_array_mt = empty_array_mt,
    _NAME = "cjson",
    _VERSION = "2.1.0.14",
    encode_empty_table_as_object = toggle("empty_table_as_object"),
    decode_array_with_array_mt = toggle("decode_array_with_array_mt"),
    encode_keep_buffer = function() return true end,
  }

  function module.encode_escape_forward_slash(setting)
    if setting ~= nil then
      cfg.escape_slash = setting == true or setting == "on" or setting == 1
      string_pattern = cfg.escape_slash and '[%c"\\/\127]' or '[%c"\\\127]'
    end
    return cfg.escape_slash
  end

  function module.encode_number_precision(precision)
    if precision ~= nil then
      if type(precision) ~= "number" or precision < 1 or precision > 16 then
        error("bad argument #1 to 'encode_number_precision' (expected integer between 1 and 16)", 2)
      end
      cfg.precision = precision
      number_format = "%." .. precision .. "g"
    end
    return cfg.precision
  end

  function module.encode_sparse_array(convert, ratio, safe)
    if convert ~= nil then cfg.sparse_convert = convert == true or convert == "on" end
    if ratio ~= nil then cfg.sparse_ratio = ratio end
    if safe ~= nil then cfg.sparse_safe = safe end
    return cfg.sparse_convert, cfg.sparse_ratio, cfg.sparse_safe
  end

  function module.encode_max_depth(depth)
    if depth ~= nil then cfg.encode_max_depth = depth end
    return cfg.encode_max_depth
  end

  function module.decode_max_depth(depth)
    if depth ~= nil then cfg.decode_max_depth = depth end
    return cfg.decode_max_depth
  end

  function module.encode_invalid_numbers(setting)
    if setting ~= nil then
      cfg.encode_invalid_numbers = setting == "null" and "null" or (setting == true or setting == "on")
    end
    return cfg.encode_invalid_numbers
  end

  module.decode_invalid_numbers = toggle("decode_invalid_numbers")
  module.encode = encode
  module.decode = decode
  module.new = function() return (new_instance()) end

  -- cjson.safe: the same functions, returning nil plus the message instead of raising.
  local safe = setmetatable({}, {__index = module})
  safe.encode = function(...)
    local ok, result = pcall(encode, ...)
    if ok then return result end
    return nil, result
  end
  safe.decode = function(text)
    local ok, result = pcall(decode, text)
    if ok then return result end
    return nil, result
  end
  safe.new = function()
    local _, new_safe = new_instance()
    return new_safe
  end
  return module, safe
end

return new_instance
