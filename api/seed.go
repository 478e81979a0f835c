package api

import (
	"bytes"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"strings"
)

// seedKinds are the key kinds that follow the "S" of a seed.
const seedKinds = "OAUNCXP"

// LooksLikeSeed reports whether s holds something like a seed: a run of
// base32 in one case that starts with "S" and a key kind and holds at least
// 30 characters. The run must start there (public keys are base32 too, and
// hold such pairs inside); within the first 16 characters of a run, a
// whole seed (its checksum holds) counts too: one glued after a word or a
// digit ("NKEY", "ID7", "nkeys"). A seed with a typo, cut short, pasted
// with its creds file around it, or lowercased is still a secret. Such
// input is refused without ever being echoed, stored or logged. An
// upper-case run counts (names do not hold 30 capitals in a row); a
// lower-case one counts when it holds a digit from 2 to 7, as a lowered
// seed does and a long lower-case word does not. An upper-case run goes on over 0, 1, 8 and 9,
// which base32 leaves out because they are mistaken for O, I, B and g: a
// seed copied with such a typo in its first 30 characters is still a
// secret, and was echoed in full (a name, a key of the wrong kind), which
// leaves one character to guess. A lower-case run does not: names such as
// "sourcecodeanalysis2019instance1" hold them, and a seed both lowered and
// mistyped is rarer than such a name.
//
// An nkey's encoded private key (KeyPair.PrivateKey: "P" and at least 56
// characters, 108 for a signing key's) holds the same secret, and counts
// too, as a run of 56 from its "P" (upper-case, or lower-case with a digit
// from 2 to 7): public keys are 56 characters and none starts with "P",
// so a "P" inside one starts a shorter run.
//
// A JWT (an activation token in an import, a user's JWT on the command
// line: base64url whose first part, a JSON object, starts "eyJ") is
// skipped whole. Base64 of the public keys in its claims is mostly
// upper-case, with 0s and 1s, over which a run goes on: about one token
// in 5,000 held "SU" (or another kind) and 28 more, and a request that
// sent it, always the same, was refused for good. Only what has a JWT's
// shape is skipped (jwtEnd): anything that started "eyJ" was, and a seed
// pasted right after those three letters was taken, stored and echoed.
// What its claims hold is read decoded instead (claimsHoldSeed): a seed in
// an activation's name, or in a token pasted into a description, crossed
// the check base64-encoded, and was stored, pushed and echoed in every
// reply that carries the token.
//
// It runs on every request body, so it is one pass over the bytes rather
// than a regular expression (a tenth of the cost on a user.create).
func LooksLikeSeed(s string) bool {
	for i := 0; i+30 <= len(s); i++ {
		c := s[i]
		if c != 'e' && c|0x20 != 's' && c|0x20 != 'p' {
			continue // most bytes start nothing: one test, not every case's
		}
		switch {
		case c == 'e' && strings.HasPrefix(s[i:], "eyJ") && (i == 0 || !jwtChar(s[i-1])):
			n, secret := jwtEnd(s, i)
			if secret {
				return true
			}
			if n > i {
				i = n - 1
			}
		case c == 'S' && (i == 0 || !base32Upper(s[i-1])) && strings.IndexByte(seedKinds, s[i+1]) >= 0:
			n := i + 2
			for n < len(s) && (base32Upper(s[n]) || typoDigit(s[n])) {
				n++
			}
			if n-i >= 30 {
				return true
			}
		case c == 'S' && i+seedLen <= len(s) && s[i+2] == 'A' && strings.IndexByte(seedKinds, s[i+1]) >= 0 && glued(s, i, true) && wholeSeed(s[i:i+seedLen]):
			// Inside a run (the case above took those that start one),
			// a seed typed with its "S" twice, or glued to a capital or
			// a digit before it ("NKEY", "ID7"), counts when it is
			// whole: its checksum holds. It started no run of its own
			// and was taken, stored and echoed whole. The run alone
			// says too little: two public keys pasted together hold
			// "S" and a kind with 30 characters after it one time in
			// two.
			return true
		case c == 's' && (i == 0 || !base32Lower(s[i-1])) && s[i+1] >= 'a' && strings.IndexByte(seedKinds, s[i+1]-'a'+'A') >= 0:
			n, digit := i+2, false
			for n < len(s) && base32Lower(s[n]) {
				digit = digit || s[n] >= '2' && s[n] <= '7'
				n++
			}
			if n-i >= 30 && digit {
				return true
			}
		case c == 's' && i+seedLen <= len(s) && s[i+2] == 'a' && strings.IndexByte(seedKinds, s[i+1]&^0x20) >= 0 && glued(s, i, false) && wholeSeed(s[i:i+seedLen]):
			// Inside a lower-case run (the case above took those that
			// start one), a lowered seed glued after a word or a digit
			// ("nkeys", "id7") counts when it is whole: its checksum
			// holds. The run alone says too little here: base32 ids in
			// lower case (content ids, 59 characters and more) hold "s"
			// and a kind with 30 characters after it one time in six.
			// Each check reads a fixed 58 characters, at most maxGlue
			// times a run: one pass still.
			return true
		case c == 'P' && (i == 0 || !base32Upper(s[i-1])):
			n := i + 1
			for n < len(s) && base32Upper(s[n]) {
				n++
			}
			if n-i >= privateLen {
				return true
			}
		case c == 'p' && (i == 0 || !base32Lower(s[i-1])):
			n, digit := i+1, false
			for n < len(s) && base32Lower(s[n]) {
				digit = digit || s[n] >= '2' && s[n] <= '7'
				n++
			}
			if n-i >= privateLen && digit {
				return true
			}
		case (c == 'P' || c == 'p') && i+privateLen <= len(s) && s[i+1]|0x20 >= 'a' && s[i+1]|0x20 <= 'd' && glued(s, i, c == 'P') && wholePrivate(s[i:]):
			// Inside a run (the cases above took those that start one),
			// a private key glued after a word or a digit ("KEY", "id7")
			// counts when it is whole, as a lowered seed does: long runs
			// (public keys glued together) hold "P" and 55 more.
			return true
		}
	}
	return false
}

// maxGlue bounds how far into a run of base32 a whole key is looked for:
// the word or id a key was glued to ("NKEY", "mykey", "id7"). Looked for
// at every character, a body of 64 KiB shaped to pass the first checks
// ("pa" over and over) cost 37 ms to read instead of 0.4.
const maxGlue = 16

// glued reports whether s[i] is at most maxGlue characters into a run of
// upper-case (or lower-case) base32.
func glued(s string, i int, upper bool) bool {
	in := base32Lower
	if upper {
		in = base32Upper
	}
	for k := 1; k <= maxGlue+1; k++ {
		if i-k < 0 || !in(s[i-k]) {
			return true
		}
	}
	return false
}

// seedLen is the length of every encoded seed.
const seedLen = 58

// wholeSeed reports whether s, in upper or lower case, is an encoded seed
// whose checksum holds.
func wholeSeed(s string) bool {
	// A seed's third character is always "A": the kind's last bits, then
	// zeros.
	if s[2] != 'a' && s[2] != 'A' {
		return false
	}
	var raw [36]byte // the prefix's 2 bytes, the seed's 32, the checksum's 2
	return wholeKey(s, raw[:])
}

// wholePrivate reports whether s starts with an encoded private key, in
// upper or lower case, whose checksum holds: a curve key's (56
// characters) or a signing key's (108).
func wholePrivate(s string) bool {
	// The prefix byte is "P" and three zero bits: "A" to "D" follow.
	if len(s) < privateLen || s[1]|0x20 < 'a' || s[1]|0x20 > 'd' {
		return false
	}
	var curve [35]byte // the prefix, the key's 32 bytes, the checksum's 2
	if wholeKey(s[:privateLen], curve[:]) {
		return true
	}
	var signing [67]byte // the prefix, the key's 64 bytes, the checksum's 2
	return len(s) >= 108 && wholeKey(s[:108], signing[:])
}

// wholeKey reports whether s, in upper or lower case, decodes into raw
// whole (len(raw) bytes) with its checksum holding. It decodes into arrays
// of its own rather than through nkeys, which allocates: in a body of
// "saa" over and over, it runs at every third byte. It wipes what it read.
func wholeKey(s string, raw []byte) bool {
	var enc [108]byte
	for k := range len(s) {
		c := s[k]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		if !base32Upper(c) {
			return false
		}
		enc[k] = c
	}
	n, err := seedEncoding.Decode(raw, enc[:len(s)])
	ok := err == nil && n == len(raw) && crc16(raw[:n-2]) == uint16(raw[n-2])|uint16(raw[n-1])<<8
	clear(raw)
	clear(enc[:])
	return ok
}

var seedEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// crc16 is the checksum nkeys encodes with (CRC-16/XMODEM).
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc = crc<<8 | crc>>8
		crc ^= uint16(c)
		crc ^= crc & 0xff >> 4
		crc ^= crc << 12
		crc ^= (crc & 0xff) << 5
	}
	return crc
}

// privateLen is the length of the shortest encoded private key, a curve
// key's, and of every public key.
const privateLen = 56

func base32Upper(c byte) bool { return c >= 'A' && c <= 'Z' || c >= '2' && c <= '7' }
func base32Lower(c byte) bool { return c >= 'a' && c <= 'z' || c >= '2' && c <= '7' }

// jwtChar reports whether c is one of a JWT's: base64url and its dots.
func jwtChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}

// jwtEnd returns the end of the JWT that starts at s[i] ("eyJ"), or i
// when what starts there is not one: three parts joined by dots, the
// first two base64url of JSON objects (a seed in them does not decode to
// JSON), the last an ed25519 signature (64 bytes, as every nkey signs).
// It looks at the run once and decodes it only when it has that shape.
// secret reports whether the JWT's decoded parts hold something like a
// seed (claimsHoldSeed).
func jwtEnd(s string, i int) (end int, secret bool) {
	n, dots := i, [2]int{}
	d := 0
	for ; n < len(s) && jwtChar(s[n]); n++ {
		if s[n] == '.' {
			if d == 2 {
				return i, false
			}
			dots[d] = n
			d++
		}
	}
	if d != 2 || n-dots[1]-1 != 86 {
		return i, false
	}
	if sig, err := base64.RawURLEncoding.DecodeString(s[dots[1]+1 : n]); err != nil || len(sig) != 64 {
		return i, false
	}
	var parts [2][]byte
	for k, part := range []string{s[i:dots[0]], s[dots[0]+1 : dots[1]]} {
		b, err := base64.RawURLEncoding.DecodeString(part)
		if err != nil || len(b) == 0 || b[0] != '{' || !json.Valid(b) {
			return i, false
		}
		parts[k] = b
	}
	return n, claimsHoldSeed(parts[0]) || claimsHoldSeed(parts[1])
}

// claimsHoldSeed reports whether a JWT's decoded part, a JSON object,
// holds something like a seed (LooksLikeSeed) in a key or a string value,
// at any depth (a token in an import is checked in turn). Its "jti" is
// left out: a hash in upper-case base32 (52 characters), which starts
// with "S" and a key kind about one time in 150; the rest of a NATS JWT's
// claims are public keys, subjects, names and numbers.
func claimsHoldSeed(b []byte) bool {
	var v map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // a number out of float64's range is no reason to skip it
	if dec.Decode(&v) != nil {
		return false
	}
	delete(v, "jti")
	return holdsSeed(v)
}

// holdsSeed reports whether a decoded JSON value holds something like a
// seed in a key or a string.
func holdsSeed(v any) bool {
	switch v := v.(type) {
	case string:
		return LooksLikeSeed(v)
	case map[string]any:
		for k, e := range v {
			if LooksLikeSeed(k) || holdsSeed(e) {
				return true
			}
		}
	case []any:
		for _, e := range v {
			if holdsSeed(e) {
				return true
			}
		}
	}
	return false
}

// typoDigit reports whether c is a digit base32 does not use.
func typoDigit(c byte) bool { return c == '0' || c == '1' || c == '8' || c == '9' }

// BodyHoldsSeed reports whether a JSON body holds something like a seed
// (LooksLikeSeed) in its raw bytes or in a string written with escapes: a
// seed spelled \u0053..., or right after an escape whose last character
// is base32 (encoding/json writes "&" as \u0026), does not start a run in
// the raw bytes. The service refuses such a body, and the Go client makes
// the same check before it sends one, so that the seed does not cross the
// wire.
func BodyHoldsSeed(body []byte) bool {
	return LooksLikeSeed(string(body)) || bytes.IndexByte(body, '\\') >= 0 && escapedSeed(body)
}

// escapedSeed reports whether a JSON body holds a seed written with escapes
// (\u0053...), which the scan of the raw bytes does not see. Each string
// literal with an escape, key or value, is unescaped on its own: the body
// as a whole may be JSON that encoding/json refuses (a number out of
// float64's range) while the strict decoder goes on to a type's own error
// that quotes the string (an export's "type"). A literal that does not
// unescape is left to the decoder, whose syntax error shows no value.
func escapedSeed(body []byte) bool {
	for i := 0; i < len(body); i++ {
		if body[i] != '"' {
			continue
		}
		end, escaped := i+1, false
		for end < len(body) && body[end] != '"' {
			if body[end] == '\\' {
				escaped = true
				end++
			}
			end++
		}
		if end >= len(body) {
			return false
		}
		if escaped {
			var v string
			if json.Unmarshal(body[i:end+1], &v) == nil && LooksLikeSeed(v) {
				return true
			}
		}
		i = end
	}
	return false
}
