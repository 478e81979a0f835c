// Package api is the wire contract of the provisioning service: the
// subjects it answers and the JSON request and reply of each. The service,
// the Go client and the JSON Schemas the service publishes in its micro
// metadata are all built from these types, so they cannot disagree.
//
// Every request and reply is a JSON object. A failed request is answered
// with the micro error headers (Nats-Service-Error, Nats-Service-Error-Code)
// and an ErrorReply body.
package api

import (
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
)

// DefaultPrefix is the first subject token of every endpoint unless the
// service is configured with another.
const DefaultPrefix = "prov"

// Subjects of the endpoints, below the prefix: a request to create an
// account goes to "prov.account.create".
const (
	SubjectAccountCreate  = "account.create"
	SubjectAccountGet     = "account.get"
	SubjectAccountList    = "account.list"
	SubjectAccountUpdate  = "account.update"
	SubjectAccountDelete  = "account.delete"
	SubjectAccountRotate  = "account.rotate"
	SubjectUserCreate     = "user.create"
	SubjectUserList       = "user.list"
	SubjectUserRevoke     = "user.revoke"
	SubjectReconcile      = "reconcile"
	SubjectOperatorRotate = "operator.rotate"
	SubjectStatus         = "status"
)

// DeadlineHeader is the request header in which a caller gives the time
// after which it no longer waits for the reply: RFC 3339 with fractional
// seconds (time.RFC3339Nano), the key written exactly so (nats.go keeps a
// header key's case). A request whose turn comes after that time (it
// waited behind max_inflight, or in a paused instance's socket) is not
// begun: it is answered 503 and nothing is done, so that a caller who gave
// up and retried does not get two users. Begun requests are carried out
// whatever the deadline: cutting one short would leave it in doubt. The
// comparison uses the service's clock, so clocks must agree to well within
// a caller's timeout. The Go client sends it from its context's deadline.
const DeadlineHeader = "Provisioner-Deadline"

// InstanceStatusSubject is the subject on which the instance named
// instance alone answers status: prefix.status.<instance>. prov.status is
// answered by any instance of the queue group; this one asks the instance
// that a reply named (a reconcile pass still running, the instances
// operator finish asks for their signing key).
func InstanceStatusSubject(prefix, instance string) string {
	return Subject(prefix, SubjectStatus+"."+instance)
}

// Subject joins a prefix and an endpoint subject.
func Subject(prefix, endpoint string) string {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return prefix + "." + endpoint
}

// CheckPrefix checks a subject prefix: subject tokens without
// wildcards or spaces, outside the server's own subjects ($SYS, $JS, ...:
// every token starting with "$"; the reply subjects of service imports,
// _R_ and _GR_) and the inboxes (_INBOX...). The users
// init makes are allowed prefix.> (the admin publishes it, the provisioner
// subscribes to it): under $SYS that would be every system request, under
// an inbox the replies of another user. The error starts with the prefix,
// quoted.
func CheckPrefix(p string) error {
	switch first, _, _ := strings.Cut(p, "."); {
	case strings.ContainsAny(p, " \t\r\n*>") || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") || strings.Contains(p, ".."):
		return fmt.Errorf("%q must be subject tokens without wildcards or spaces", p)
	case strings.HasPrefix(first, "$") || strings.HasPrefix(first, "_INBOX") || first == "_R_" || first == "_GR_":
		// _R_ and _GR_ are the server's reply subjects of service imports
		// (and gateways): the system services' answers to every account
		// pass through _R_.> in the system account.
		return fmt.Errorf("%q may not start with $, _INBOX, _R_ or _GR_: those are the server's own subjects, its reply subjects and the inboxes, and the users' permissions are built on the prefix", p)
	}
	return nil
}

// AccountLimits are an account's limits, with the JWT's own field names.
// A nil field is not given: a new account keeps the default (unlimited core
// limits, JetStream off), an update keeps the current value. -1 means
// unlimited.
type AccountLimits struct {
	Subs           *int64 `json:"subs,omitempty"`
	Data           *int64 `json:"data,omitempty"`
	Payload        *int64 `json:"payload,omitempty"`
	Imports        *int64 `json:"imports,omitempty"`
	Exports        *int64 `json:"exports,omitempty"`
	Wildcards      *bool  `json:"wildcards,omitempty"`
	DisallowBearer *bool  `json:"disallow_bearer,omitempty"`
	Conn           *int64 `json:"conn,omitempty"`
	Leaf           *int64 `json:"leaf,omitempty"`

	JetStreamLimits
	// TieredLimits are JetStream limits per replica tier ("R1", "R3"), an
	// alternative to the flat JetStream limits above: a request with both
	// is refused. Given, they replace the account's JetStream limits.
	TieredLimits map[string]JetStreamLimits `json:"tiered_limits,omitempty"`
}

// JetStreamLimits are an account's JetStream limits. JetStream is on for an
// account when mem_storage or disk_storage is not 0.
type JetStreamLimits struct {
	MemStorage         *int64 `json:"mem_storage,omitempty"`
	DiskStorage        *int64 `json:"disk_storage,omitempty"`
	Streams            *int64 `json:"streams,omitempty"`
	Consumer           *int64 `json:"consumer,omitempty"`
	MaxAckPending      *int64 `json:"max_ack_pending,omitempty"`
	MemMaxStreamBytes  *int64 `json:"mem_max_stream_bytes,omitempty"`
	DiskMaxStreamBytes *int64 `json:"disk_max_stream_bytes,omitempty"`
	MaxBytesRequired   *bool  `json:"max_bytes_required,omitempty"`
}

// UserLimits are a user's limits, with the JWT's own field names.
type UserLimits struct {
	Subs    *int64 `json:"subs,omitempty"`
	Data    *int64 `json:"data,omitempty"`
	Payload *int64 `json:"payload,omitempty"`
	// Src lists the CIDR blocks the user may connect from.
	Src []string `json:"src,omitempty"`
	// Times lists the daily time ranges ("08:00:00" to "17:00:00") the user
	// may connect in, in TimesLocation.
	Times         []jwt.TimeRange `json:"times,omitempty"`
	TimesLocation string          `json:"times_location,omitempty"`
}

// Permissions are publish, subscribe and response permissions, with the
// JWT's own field names (pub/sub with allow/deny lists, resp with max and
// ttl).
type Permissions = jwt.Permissions

// Role is a role of an account: a scoped signing key of the account whose
// template the server applies to every user the key signs, so that a user
// issued in a role can never have more than the role gives, whatever the
// request that issued it said. Changing a role's template disconnects the
// users it signed (they reconnect under the new template).
type Role struct {
	Pub    *jwt.Permission         `json:"pub,omitempty"`
	Sub    *jwt.Permission         `json:"sub,omitempty"`
	Resp   *jwt.ResponsePermission `json:"resp,omitempty"`
	Limits *UserLimits             `json:"limits,omitempty"`
	// BearerToken lets the role's users connect without proving they hold
	// their key.
	BearerToken            bool     `json:"bearer_token,omitempty"`
	AllowedConnectionTypes []string `json:"allowed_connection_types,omitempty"`
}

// CreateAccountRequest is the body of account.create.
type CreateAccountRequest struct {
	// Name is unique among the accounts the service manages.
	Name               string         `json:"name"`
	Description        string         `json:"description,omitempty"`
	Limits             *AccountLimits `json:"limits,omitempty"`
	DefaultPermissions *Permissions   `json:"default_permissions,omitempty"`
	Tags               []string       `json:"tags,omitempty"`
	// Roles are the account's roles by name (letters, digits, - and _).
	Roles map[string]*Role `json:"roles,omitempty"`
	// SelfService lets the account's own users issue, list and revoke
	// users of the account, each in one of its roles, on
	// <prefix>.self.user.* (see SelfCreateUserRequest).
	SelfService bool `json:"self_service,omitempty"`
	// SelfServiceQuota caps the active users issued through self-service;
	// 0 is no cap.
	SelfServiceQuota int `json:"self_service_quota,omitempty"`
	// SelfServiceRole, when set, lets only the users of that role (signed
	// by its scoped key) self-serve; otherwise any user of the account who
	// may publish <prefix>.self.user.* may.
	SelfServiceRole string `json:"self_service_role,omitempty"`
	// Exports and Imports use the JWT's own field names. An import's
	// "account" may also name an account this service manages; the import
	// of a private export (token_req) from such an account gets its
	// activation token, signed by the exporting account's signing key.
	Exports jwt.Exports `json:"exports,omitempty"`
	Imports jwt.Imports `json:"imports,omitempty"`
	// ExpiresIn is a Go duration such as "720h": the account's JWT
	// expires then, and its users can no longer connect.
	ExpiresIn string `json:"expires_in,omitempty"`
}

// UpdateAccountRequest is the body of account.update: only the fields
// given change; inside limits, only the limits given. DefaultPermissions,
// Tags and Description replace the current ones when given.
type UpdateAccountRequest struct {
	// Account is an account name or public key (A...).
	Account            string         `json:"account" aka:"name,public_key,account_name,id"`
	Description        *string        `json:"description,omitempty"`
	Limits             *AccountLimits `json:"limits,omitempty"`
	DefaultPermissions *Permissions   `json:"default_permissions,omitempty"`
	Tags               *[]string      `json:"tags,omitempty"`
	// Roles given are added, or replace the role of that name (its key
	// stays; its users are disconnected and reconnect under the new
	// template); a role given as null is removed, and the users it signed
	// are cut off.
	Roles            map[string]*Role `json:"roles,omitempty"`
	SelfService      *bool            `json:"self_service,omitempty"`
	SelfServiceQuota *int             `json:"self_service_quota,omitempty"`
	SelfServiceRole  *string          `json:"self_service_role,omitempty"`
	// Exports and Imports, when given, replace the account's.
	Exports *jwt.Exports `json:"exports,omitempty"`
	Imports *jwt.Imports `json:"imports,omitempty"`
	// ExpiresIn sets a new expiry from now; "" removes it.
	ExpiresIn *string `json:"expires_in,omitempty"`
}

// RotateAccountRequest is the body of account.rotate: the account gets a
// new signing key, and a new scoped key with the same template for each
// role, which sign every user from now on. The keys they replace are
// retired: still listed in the account JWT, so the users and activation
// tokens they signed keep working, until RevokeOld removes them.
type RotateAccountRequest struct {
	Account string `json:"account" aka:"name,public_key,account_name,id"`
	// RevokeOld removes every retired key, those this call retires
	// included: the users and activation tokens they signed stop working.
	RevokeOld bool `json:"revoke_old,omitempty"`
	// Rotate is true unless given false: with false and RevokeOld, only
	// the keys a previous rotation retired are removed.
	Rotate *bool `json:"rotate,omitempty"`
}

// RotateAccountReply is the reply of account.rotate.
type RotateAccountReply struct {
	Account Account `json:"account"`
	// SigningKeys are the keys in use now; Retired the ones still listed
	// but no longer signing; Removed the ones this call took out.
	SigningKeys []string      `json:"signing_keys"`
	Retired     []string      `json:"retired,omitempty"`
	Removed     []string      `json:"removed,omitempty"`
	Resolver    []ServerReply `json:"resolver"`
	// ResolverOmitted counts the servers' answers left out of Resolver
	// (see ServerReply).
	ResolverOmitted int `json:"resolver_omitted,omitempty"`
	// CutImports lists the imports of other managed accounts whose
	// activation tokens the removed keys signed (see CutImport), as many
	// as the reply has room for; CutImportsOmitted counts the rest.
	CutImports        []CutImport `json:"cut_imports,omitempty"`
	CutImportsOmitted int         `json:"cut_imports_omitted,omitempty"`
	// CutImportsIncomplete is set, saying why, when CutImports may lack
	// imports the change cut off: they were listed from a copy of the
	// store not known to hold every account stored before the change.
	CutImportsIncomplete string `json:"cut_imports_incomplete,omitempty"`
}

// AccountRequest is the body of account.get and account.delete.
type AccountRequest struct {
	// Account is an account name or public key (A...).
	Account string `json:"account" aka:"name,public_key,account_name,id"`
}

// Account describes an account in replies.
type Account struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
	// JWT is the account's current JWT, signed by the operator signing key.
	JWT string `json:"jwt,omitempty"`
	// Claims are the decoded JWT; account.get sets them.
	Claims *jwt.AccountClaims `json:"claims,omitempty"`
	// ClaimsOmitted is set by account.get, in place of Claims, when the
	// reply with them would be over what one NATS message may carry: the
	// claims repeat the JWT, decoded, at near its size, while a JWT may
	// take most of max_payload. It says why; the claims are in the JWT
	// (the Go client decodes it into Claims).
	ClaimsOmitted string `json:"claims_omitted,omitempty"`
	// Roles names the account's roles (account.get).
	Roles            []string `json:"roles,omitempty"`
	SelfService      bool     `json:"self_service,omitempty"`
	SelfServiceQuota int      `json:"self_service_quota,omitempty"`
	SelfServiceRole  string   `json:"self_service_role,omitempty"`
}

// ServerReply is one server's answer to a push, or that it did not answer.
// A reply that carries an account JWT lists as many as its room beside the
// JWT holds (those that did not store the change first), and counts the
// rest in resolver_omitted.
type ServerReply struct {
	Server   string `json:"server"`
	ServerID string `json:"server_id"`
	// Code is the server's status: 200 when it stored the change, its
	// error code when it refused, 504 when it did not answer in time.
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// AccountReply is the reply of account.create, account.get and
// account.update.
type AccountReply struct {
	Account Account `json:"account"`
	// Resolver lists each server's answer to the push (create and update).
	Resolver []ServerReply `json:"resolver,omitempty"`
	// ResolverOmitted counts the servers' answers left out of Resolver
	// (see ServerReply).
	ResolverOmitted int `json:"resolver_omitted,omitempty"`
	// CutImports lists the imports of other managed accounts an update of
	// exports cut off (see CutImport), as many as the reply has room for
	// beside the servers' answers; CutImportsOmitted counts the rest.
	CutImports        []CutImport `json:"cut_imports,omitempty"`
	CutImportsOmitted int         `json:"cut_imports_omitted,omitempty"`
	// CutImportsIncomplete is set, saying why, when CutImports may lack
	// imports the change cut off: they were listed from a copy of the
	// store not known to hold every account stored before the change.
	CutImportsIncomplete string `json:"cut_imports_incomplete,omitempty"`
}

// CutImport is an import of another managed account that an update of its
// exporter's exports, or the exporter's delete, cut off: it was served
// before the change and is not after (no export matches it any more, the
// export became private and the import has no activation token, its token
// is no longer one the server takes). The change is made all the same:
// the exporter decides what it exports, as in NATS itself, and the server
// drops such an import from the importing account without a word.
type CutImport struct {
	// Account and AccountName name the importing account.
	Account     string `json:"account"`
	AccountName string `json:"account_name"`
	// Name, Subject and Type are the import's.
	Name    string `json:"name,omitempty"`
	Subject string `json:"subject"`
	Type    string `json:"type"`
}

// ListRequest pages a list: Offset skips entries; Limit, when above 0,
// caps how many come back. A reply never grows past what one NATS message
// can carry: when more remain, its next_offset says where to go on.
type ListRequest struct {
	Offset int `json:"offset,omitempty"`
	Limit  int `json:"limit,omitempty"`
}

// AccountSummary names an account in account.list.
type AccountSummary struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
}

// ListAccountsReply is the reply of account.list: the accounts the service
// manages, sorted by name.
type ListAccountsReply struct {
	Accounts []AccountSummary `json:"accounts"`
	Total    int              `json:"total"`
	// NextOffset is set when more accounts remain.
	NextOffset int `json:"next_offset,omitempty"`
	// Unreadable is how many account records the store holds that cannot
	// be read (damaged, or written by a newer provisioner): they are not
	// listed, nor counted in Total, and may be live accounts.
	// prov.status's damage names them.
	Unreadable int `json:"unreadable,omitempty"`
}

// Phases of a deleted account in DeleteAccountReply.
const (
	// PhaseDisabled: the account is disabled on every server that answered
	// (no connections, every user revoked); the DELETE follows once every
	// known server has confirmed that, which the reconciler sees to.
	PhaseDisabled = "disabled"
	// PhaseDeleted: every known server has dropped the account, or holds
	// it disabled where servers do not allow deletes.
	PhaseDeleted = "deleted"
)

// DeleteAccountReply is the reply of account.delete.
type DeleteAccountReply struct {
	Deleted string `json:"deleted"`
	// Phase is PhaseDeleted, or PhaseDisabled while some known server has
	// not confirmed (Waiting names them).
	Phase    string        `json:"phase"`
	Waiting  []string      `json:"waiting,omitempty"`
	Resolver []ServerReply `json:"resolver"`
	// ResolverOmitted counts the servers' answers left out of Resolver
	// (see ServerReply).
	ResolverOmitted int `json:"resolver_omitted,omitempty"`
	// CutImports lists the imports of other managed accounts the delete
	// cut off (see CutImport); CutImportsOmitted counts those the reply
	// had no room for.
	CutImports        []CutImport `json:"cut_imports,omitempty"`
	CutImportsOmitted int         `json:"cut_imports_omitted,omitempty"`
	// CutImportsIncomplete is set, saying why, when CutImports may lack
	// imports the change cut off: they were listed from a copy of the
	// store not known to hold every account stored before the change.
	CutImportsIncomplete string `json:"cut_imports_incomplete,omitempty"`
}

// CreateUserRequest is the body of user.create. Without PublicKey the
// service generates the user's key and returns its seed and a creds file;
// with it, only the JWT.
type CreateUserRequest struct {
	// Account is an account name or public key (A...).
	Account string `json:"account" aka:"account_name,account_id"`
	// Name is unique among the account's active users.
	Name      string `json:"name"`
	PublicKey string `json:"public_key,omitempty"`
	// Role issues the user in one of the account's roles: its scoped key
	// signs the user, and the role's template gives the permissions and
	// limits, so the request may not give its own.
	Role string `json:"role,omitempty"`
	// Permissions and Limits are the user's own; without them (and without
	// a role) the account's default permissions apply.
	Permissions *Permissions `json:"permissions,omitempty"`
	Limits      *UserLimits  `json:"limits,omitempty"`
	// ExpiresIn is a Go duration such as "24h"; without it the JWT does
	// not expire.
	ExpiresIn              string   `json:"expires_in,omitempty"`
	BearerToken            bool     `json:"bearer_token,omitempty"`
	AllowedConnectionTypes []string `json:"allowed_connection_types,omitempty"`
	Tags                   []string `json:"tags,omitempty"`
	// XKey is the caller's curve public key (X...). When the service
	// generates the key, the seed and the creds file are then sealed to it
	// (nkeys xkeys) instead of sent in the clear, so that another holder of
	// the same creds, who may read the same replies, learns nothing.
	XKey string `json:"xkey,omitempty"`
}

// User is an issued user in replies. Seed and Creds are set only when the
// service generated the key and the request named no xkey; with an xkey,
// Sealed holds them instead.
type User struct {
	Name      string  `json:"name"`
	PublicKey string  `json:"public_key"`
	JWT       string  `json:"jwt"`
	Seed      string  `json:"seed,omitempty"`
	Creds     string  `json:"creds,omitempty"`
	Sealed    *Sealed `json:"sealed,omitempty"`
}

// Sealed holds a generated user's seed and creds file, each sealed with
// nkeys xkeys from Sender to the request's xkey and base64-encoded: open
// them with the caller's curve key pair and Sender
// (kp.Open(decoded, Sender)).
type Sealed struct {
	Sender string `json:"sender"`
	Seed   string `json:"seed"`
	Creds  string `json:"creds"`
}

// CreateUserReply is the reply of user.create.
type CreateUserReply struct {
	User User `json:"user"`
}

// ListUsersRequest is the body of user.list.
type ListUsersRequest struct {
	// Account is an account name or public key (A...).
	Account string `json:"account" aka:"name,public_key,account_name,id"`
	ListRequest
}

// UserSummary is one user in user.list.
type UserSummary struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
	IssuedAt  int64  `json:"issued_at"`
	ExpiresAt int64  `json:"expires_at,omitempty"`
	Revoked   bool   `json:"revoked"`
	// Expired is set once the user's JWT has expired.
	Expired bool   `json:"expired,omitempty"`
	Role    string `json:"role,omitempty"`
	// SelfService is set for users a tenant issued itself.
	SelfService bool `json:"self_service,omitempty"`
}

// ListUsersReply is the reply of user.list: the users issued under the
// account, in issue order: by issued_at, then public key, the same on
// every instance.
type ListUsersReply struct {
	Users []UserSummary `json:"users"`
	Total int           `json:"total"`
	// NextOffset is set when more users remain.
	NextOffset int `json:"next_offset,omitempty"`
}

// RevokeUserRequest is the body of user.revoke.
type RevokeUserRequest struct {
	// Account is an account name or public key (A...).
	Account string `json:"account" aka:"account_name,account_id"`
	// User is a user public key (U...) or the name of an active user.
	User string `json:"user" aka:"name,public_key,user_name,key"`
}

// RevokeUserReply is the reply of user.revoke.
type RevokeUserReply struct {
	Revoked  string        `json:"revoked"`
	Account  Account       `json:"account"`
	Resolver []ServerReply `json:"resolver"`
	// ResolverOmitted counts the servers' answers left out of Resolver
	// (see ServerReply).
	ResolverOmitted int `json:"resolver_omitted,omitempty"`
}

// Self-service subjects. A tenant's user sends to <prefix>.self.user.*
// from its own account; the service adds that import to every account
// with self_service, mapped onto <prefix>.self.<ACCOUNT>.user.* in the
// service's own account, whose export binds the importing account's key to
// that token: the server, not the request, says whose account it is.
const (
	SubjectSelfUserCreate = "self.user.create"
	SubjectSelfUserList   = "self.user.list"
	SubjectSelfUserRevoke = "self.user.revoke"
)

// SelfServiceName names the service account's self-service export and the
// imports of it the service adds to tenant accounts.
const SelfServiceName = "provisioner self-service"

// SelfExport is the export of the service's own account that tenants'
// self-service imports name: <prefix>.self.*.user.* with the importing
// account's key bound to the wildcard's token (account_token_position), so
// that the server, not the request, says whose account a request is for.
func SelfExport(prefix string) *jwt.Export {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return &jwt.Export{
		Name:                 SelfServiceName,
		Subject:              jwt.Subject(prefix + ".self.*.user.*"),
		Type:                 jwt.Service,
		ResponseType:         jwt.ResponseTypeSingleton,
		AccountTokenPosition: uint(len(strings.Split(prefix, ".")) + 2),
	}
}

// AuditStream is the audit stream in the service's own account (JetStream
// store): every event, on <prefix>.audit.<account>.<type>.
const AuditStream = "PROV_AUDIT"

// SelfCreateUserRequest is the body of self.user.create: a tenant issues a
// user of its own account in one of the account's roles.
type SelfCreateUserRequest struct {
	Name string `json:"name"`
	// Role is required: one of the account's roles.
	Role      string `json:"role"`
	PublicKey string `json:"public_key,omitempty"`
	ExpiresIn string `json:"expires_in,omitempty"`
	XKey      string `json:"xkey,omitempty"`
}

// SelfListUsersRequest is the body of self.user.list.
type SelfListUsersRequest struct {
	ListRequest
}

// SelfRevokeUserRequest is the body of self.user.revoke: a user public key
// or the name of an active user, issued through self-service.
type SelfRevokeUserRequest struct {
	User string `json:"user" aka:"name,public_key,user_name,key"`
}

// Events are published on <prefix>.events.<Type> in the system account for
// every change; admin.creds may subscribe to them.
const (
	EventAccountCreated = "account.created"
	EventAccountUpdated = "account.updated"
	EventAccountDeleted = "account.deleted"
	EventUserCreated    = "user.created"
	EventUserRevoked    = "user.revoked"
)

// Caller is who asked for a change.
type Caller struct {
	// Kind is "admin" for a request made in the system account (where the
	// server says nothing of the caller), "tenant" for self-service.
	Kind string `json:"kind"`
	// Account, User, Name are the caller's, as the server reported them.
	Account string `json:"account,omitempty"`
	User    string `json:"user,omitempty"`
	Name    string `json:"name,omitempty"`
}

// Event is one change. It never holds a seed.
type Event struct {
	Type        string `json:"type"`
	Time        string `json:"time"`
	Account     string `json:"account"`
	AccountName string `json:"account_name,omitempty"`
	User        string `json:"user,omitempty"`
	UserName    string `json:"user_name,omitempty"`
	Role        string `json:"role,omitempty"`
	Caller      Caller `json:"caller"`
	// Result is "ok", or the error code and description of a failure.
	Result string `json:"result"`
	// Instance is the provisioner instance that made the change.
	Instance string `json:"instance,omitempty"`
}

// SubjectAudit pages the audit stream (JetStream store only).
const SubjectAudit = "audit"

// AuditRequest is the body of audit: the events of one account ("" for
// all), after a stream sequence, at most Limit (default
// DefaultAuditLimit, at most MaxAuditLimit). StreamCreated, when given
// with After, is the StreamCreated of the reply After came from: a stream
// made since (deleted, its sequences starting over at 1) is a conflict
// (409) rather than read from After on, which skipped its first events
// or read a position of another stream. Without it, a bare After is read
// in whatever stream there is now, as before.
type AuditRequest struct {
	Account       string    `json:"account,omitempty" aka:"name,public_key"`
	After         uint64    `json:"after,omitempty"`
	StreamCreated time.Time `json:"stream_created,omitzero"`
	Limit         int       `json:"limit,omitempty"`
}

// The page sizes of audit.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 1000
)

// AuditEntry is one event in the audit stream, with its sequence.
type AuditEntry struct {
	Seq   uint64 `json:"seq"`
	Event Event  `json:"event"`
}

// AuditReply is the reply of audit. Next is set when more events remain:
// send it as After, and StreamCreated, when the audit stream the page was
// read from was made, with it.
type AuditReply struct {
	Events        []AuditEntry `json:"events"`
	Next          uint64       `json:"next,omitempty"`
	StreamCreated time.Time    `json:"stream_created,omitzero"`
}

// RotateOperatorRequest is the body of operator.rotate: switch to the
// operator signing key named by the config's operator_signing_key_next,
// once every known server trusts it, and re-sign every account with it.
type RotateOperatorRequest struct{}

// RotateOperatorReply is the reply of operator.rotate. Run it again while
// Failed is not empty: it is resumable.
type RotateOperatorReply struct {
	// SigningKey signs from now on; Previous signed before.
	SigningKey string `json:"signing_key"`
	Previous   string `json:"previous"`
	// Servers are the servers that were checked to trust SigningKey.
	Servers []string `json:"servers"`
	// Accounts were re-signed with SigningKey and pushed: the managed
	// ones, the system account and the provisioner's own.
	Accounts int      `json:"accounts"`
	Resigned int      `json:"resigned"`
	Failed   []string `json:"failed,omitempty"`
	// FailedOmitted is how many failed accounts were left out of Failed
	// (the list holds as many as half of what a reply may carry); the
	// log names each.
	FailedOmitted int    `json:"failed_omitted,omitempty"`
	Duration      string `json:"duration"`
}

// ReconcileRequest is the body of reconcile: run a reconcile pass now.
type ReconcileRequest struct{}

// ReconcileReply is the summary of a reconcile pass: it makes every server
// hold the store's current version of every account, finishes deletes,
// and reports accounts on the servers that the service does not know.
type ReconcileReply struct {
	// Servers is how many servers are known; Up how many answer.
	Servers int `json:"servers"`
	Up      int `json:"up"`
	// Accounts is how many accounts the store holds, tombstones included.
	Accounts int `json:"accounts"`
	// Checked is how many were compared with every server's copy.
	Checked int `json:"checked"`
	// Pushed is how many accounts were pushed because a server lacked
	// their current version.
	Pushed int `json:"pushed"`
	// CacheRepushed is how many accounts were pushed again only because a
	// cache resolver (a leaf or edge server) lists them and has not taken
	// their current version: at the pass's rate, each no more often than
	// its backoff allows (README, the cache resolver).
	CacheRepushed int `json:"cache_repushed,omitempty"`
	// Deleted is how many deletes were finished.
	Deleted int `json:"deleted"`
	// Expired is how many accounts were skipped because their JWT expired.
	Expired int `json:"expired"`
	// Orphans are accounts on the servers that this service does not
	// manage (other than the system account and the service's own). They
	// are reported and logged, never deleted.
	Orphans []string `json:"orphans"`
	// OrphansOmitted is how many orphans were left out of Orphans (the
	// first ones by key are listed): a list of them all may not fit in
	// one NATS message. The log names every one.
	OrphansOmitted int `json:"orphans_omitted,omitempty"`
	// Failed is how many accounts could not be brought in line; the next
	// pass tries again.
	Failed int `json:"failed"`
	// Messages is how many requests the pass sent to the servers.
	Messages int `json:"messages"`
	// Started is when the pass began (RFC 3339); Duration how long it
	// took (a Go duration).
	Started  string `json:"started"`
	Duration string `json:"duration"`
	// Skipped is set when another instance holds the reconciler lease.
	Skipped string `json:"skipped,omitempty"`
	// Running is set when the pass had not ended when the reply was due:
	// it goes on, and prov.status's last_reconcile reports it once it
	// ended. Started is then when it started, if it has.
	Running bool `json:"running,omitempty"`
	// Instance names the instance that runs the pass, and StatusSubject
	// (prefix.status.<instance>) is where that instance alone answers
	// status: prov.status goes to any instance, which reports its own
	// last pass, not this one. Set with Running.
	Instance      string `json:"instance,omitempty"`
	StatusSubject string `json:"status_subject,omitempty"`
}

// StatusRequest is the body of status.
type StatusRequest struct{}

// ServerStatus is one known server in StatusReply.
type ServerStatus struct {
	Name     string `json:"name"`
	ID       string `json:"id"`
	Up       bool   `json:"up"`
	LastSeen string `json:"last_seen,omitempty"`
	// Resolver is "cache" for a server whose resolver is a cache one (as
	// its answer to a push said), "none" for one that answers the server
	// ping but no claims request (a MEMORY or URL resolver): it gets no
	// account pushed and nothing waits for it. Empty for a full resolver
	// (or one not yet known to be otherwise).
	Resolver string `json:"resolver,omitempty"`
}

// StatusReply describes the instance that answered.
type StatusReply struct {
	Instance string `json:"instance"`
	// Store is "file" or "jetstream".
	Store string `json:"store"`
	// Role is "leader" for the instance that reconciles, "follower" for
	// the others; every instance answers requests.
	Role    string         `json:"role"`
	Version string         `json:"version,omitempty"`
	Servers []ServerStatus `json:"servers"`
	// LastReconcile is the summary of this instance's last pass.
	LastReconcile *ReconcileReply `json:"last_reconcile,omitempty"`
	// Problem, when set, is why this instance cannot serve as it should
	// until it is restarted: its store refuses every change (its journal
	// could not be written, its bucket was deleted under it), or servers
	// do not trust the operator signing key it signs with, so that every
	// account it pushes is unusable there, or the bucket holds accounts
	// sealed with a seal key it does not hold (another instance runs with
	// another seal_key, or a rotated key was dropped from
	// seal_key_previous too early). A health check's cue.
	Problem string `json:"problem,omitempty"`
	// Damage, when set, names the entries in the store that cannot be
	// read (damaged in the bucket, or written by a newer provisioner;
	// their keys only) and what to do: for account records, reads of
	// those accounts fail on every instance, and any instance that starts
	// refuses the store until they are repaired; user records and name
	// entries are skipped. Not a Problem: every instance shares the
	// entries, and a restart does not help.
	Damage string `json:"damage,omitempty"`
	// SigningKey is the public key of the operator signing key this
	// instance signs account JWTs with (never its seed): during a
	// rotation, an instance still on the old key shows it here.
	SigningKey string `json:"signing_key,omitempty"`
}

// HealthPath is the path of the HTTP health endpoint (health_listen).
const HealthPath = "/healthz"

// Health statuses: ok is answered 200, the others 503.
const (
	HealthOK          = "ok"
	HealthStarting    = "starting"
	HealthUnavailable = "unavailable"
	HealthStopping    = "stopping"
)

// HealthReply is the body of the HTTP health endpoint's answer.
type HealthReply struct {
	// Status is ok while the instance serves: its NATS connections up, its
	// store usable. starting: not yet serving (waiting for NATS or the
	// store); stopping: draining; unavailable: Problems says why.
	Status   string   `json:"status"`
	Instance string   `json:"instance"`
	Problems []string `json:"problems,omitempty"`
	// Warnings, with any status, say what an operator should see to
	// before a restart, though the instance serves: store records that
	// cannot be read (prov.status's damage names them).
	Warnings []string `json:"warnings,omitempty"`
}

// ErrorReply is the body of every failed request.
type ErrorReply struct {
	Error Error `json:"error"`
}

// Error codes of failed requests. They follow HTTP.
const (
	// CodeInvalid: bad JSON, wrong types, unknown fields, bad values.
	CodeInvalid = 400
	// CodeForbidden: the request targets what the caller may not change.
	CodeForbidden = 403
	// CodeNotFound: unknown account or user.
	CodeNotFound = 404
	// CodeConflict: a name or key that must be new is taken.
	CodeConflict = 409
	// CodeInternal: anything else; the service's log has the details.
	CodeInternal = 500
	// CodeRefused: a server refused the change.
	CodeRefused = 502
	// CodeUnavailable: the service is shutting down or its store cannot be
	// reached; retry.
	CodeUnavailable = 503
	// CodeTimeout: no server answered, or the push could not be sent.
	CodeTimeout = 504
	// CodeStoreFull: the store has no room (the service account's
	// JetStream storage limit, the disk, or the process's file size
	// limit); nothing was changed. It takes an operator to make room (or
	// raise the limit).
	CodeStoreFull = 507
)

// Error is a failed request's code (one of the Code constants) and
// description.
type Error struct {
	Code        int    `json:"code"`
	Description string `json:"description"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s (code %d)", e.Description, e.Code) }
