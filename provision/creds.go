package provision

import "strings"

// FormatCreds renders a creds file exactly as jwt.FormatUserConfig does,
// without what that function does first: decode the JWT, verify its
// signature and derive the seed's public key again, two Ed25519 operations
// that cost more than issuing the user. Both inputs must come from the same
// key pair, made a moment ago (the service, and bench's floor, do so).
func FormatCreds(userJWT string, seed []byte) string {
	var b strings.Builder
	b.Grow(len(userJWT) + len(seed) + 420)
	b.WriteString("-----BEGIN NATS USER JWT-----\n")
	b.WriteString(userJWT)
	b.WriteString("\n------END NATS USER JWT------\n\n")
	b.WriteString("************************* IMPORTANT *************************\n")
	b.WriteString("NKEY Seed printed below can be used to sign and prove identity.\n")
	b.WriteString("NKEYs are sensitive and should be treated as secrets.\n\n")
	b.WriteString("-----BEGIN USER NKEY SEED-----\n")
	b.Write(seed)
	b.WriteString("\n------END USER NKEY SEED------\n\n")
	b.WriteString("*************************************************************\n")
	return b.String()
}
