package client

import (
	"context"
	"fmt"
	"strings"

	"github.com/natsprov/provisioner/api"
)

// RotateAccount gives an account new signing keys (account.rotate); see
// api.RotateAccountRequest.
func (c *Client) RotateAccount(ctx context.Context, req api.RotateAccountRequest) (*api.RotateAccountReply, error) {
	var rep api.RotateAccountReply
	if err := c.request(ctx, api.SubjectAccountRotate, req, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// Reconcile asks the instance that answers for a reconcile pass now. The
// reply is the pass's summary only when the pass ended in time: one still
// going at nine tenths of the service's request_timeout goes on, and the
// reply is then {"running": true} (and when it started, if it has), with
// none of the counts, and Instance names the instance that runs it:
// InstanceStatus(ctx, rep.Instance)'s LastReconcile reports the summary
// once the pass ended (Status is answered by any instance, which reports
// its own last pass). A reply with Skipped set is of an instance that did not
// reconcile, because another holds the reconciler lease (or it lost the
// lease during the pass): its counts are zero as well. Check Running and
// Skipped before reading the counts.
func (c *Client) Reconcile(ctx context.Context) (*api.ReconcileReply, error) {
	var rep api.ReconcileReply
	if err := c.request(ctx, api.SubjectReconcile, api.ReconcileRequest{}, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// Status describes the instance that answers.
func (c *Client) Status(ctx context.Context) (*api.StatusReply, error) {
	var rep api.StatusReply
	if err := c.request(ctx, api.SubjectStatus, api.StatusRequest{}, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// Audit returns one page of the audit stream (JetStream store): follow
// Next as req.After, with StreamCreated as req.StreamCreated, so that a
// stream made again meanwhile is a conflict (409: page again from 0).
func (c *Client) Audit(ctx context.Context, req api.AuditRequest) (*api.AuditReply, error) {
	var rep api.AuditReply
	if err := c.request(ctx, api.SubjectAudit, req, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// RotateOperator switches the service to the operator signing key its
// config names as next, once every server trusts it, and re-signs every
// account (operator.rotate).
func (c *Client) RotateOperator(ctx context.Context) (*api.RotateOperatorReply, error) {
	var rep api.RotateOperatorReply
	if err := c.request(ctx, api.SubjectOperatorRotate, api.RotateOperatorRequest{}, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// SelfCreateUser issues a user of the caller's own account in one of its
// roles, through self-service (the caller is a tenant's user; the service
// learns its account from the server). Without req.PublicKey the key pair
// is made here and req.XKey is not sent, as CreateUser does; a public_key
// that holds a seed is refused (ErrInvalid) without sending anything, and
// a call with a key made here whose outcome is unknown returns a
// *UserInDoubtError, as CreateUser does.
func (c *Client) SelfCreateUser(ctx context.Context, req api.SelfCreateUserRequest) (*User, error) {
	if pub := strings.TrimSpace(req.PublicKey); pub != "" {
		if err := notASeed(pub); err != nil {
			return nil, err
		}
		var rep api.CreateUserReply
		if err := c.request(ctx, api.SubjectSelfUserCreate, req, &rep); err != nil {
			return nil, err
		}
		if err := checkIssued(api.SubjectSelfUserCreate, "", pub, rep.User); err != nil {
			return nil, err
		}
		return &User{Name: rep.User.Name, PublicKey: pub, JWT: rep.User.JWT}, nil
	}
	return c.issueLocal(ctx, api.SubjectSelfUserCreate, "", func(pub string) any {
		req.PublicKey, req.XKey = pub, ""
		return req
	})
}

// SelfListUsers lists the users of the caller's own account.
func (c *Client) SelfListUsers(ctx context.Context, req api.SelfListUsersRequest) (*api.ListUsersReply, error) {
	var rep api.ListUsersReply
	if err := c.request(ctx, api.SubjectSelfUserList, req, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// SelfRevokeUser revokes a user the caller's account issued itself.
func (c *Client) SelfRevokeUser(ctx context.Context, req api.SelfRevokeUserRequest) (*api.RevokeUserReply, error) {
	var rep api.RevokeUserReply
	if err := c.request(ctx, api.SubjectSelfUserRevoke, req, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// InstanceStatus describes the instance named instance, which alone
// answers on prefix.status.<instance>: the one a running Reconcile
// named.
func (c *Client) InstanceStatus(ctx context.Context, instance string) (*api.StatusReply, error) {
	// An instance name is letters, digits, _ and - (the config's rule).
	// Any other was sent as is: "" (the Instance of a reply that names
	// none) to prov.status., which the server drops, so that the call
	// waited out its timeout; a wildcard or a dot to no one.
	if instance == "" || strings.IndexFunc(instance, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}) >= 0 {
		return nil, fmt.Errorf("%w: instance %q is not an instance name (letters, digits, _ and -); nothing was sent", ErrInvalid, instance)
	}
	var rep api.StatusReply
	if err := c.request(ctx, api.SubjectStatus+"."+instance, api.StatusRequest{}, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}
