package client

import (
	"context"
	"fmt"
	"iter"

	"github.com/natsprov/provisioner/api"
)

// CreateAccount creates an account and pushes it to the servers. The reply
// lists each server's answer.
func (c *Client) CreateAccount(ctx context.Context, req api.CreateAccountRequest) (*api.AccountReply, error) {
	var rep api.AccountReply
	if err := c.request(ctx, api.SubjectAccountCreate, req, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// GetAccount returns an account, by name or public key, with its JWT and
// decoded claims.
func (c *Client) GetAccount(ctx context.Context, req api.AccountRequest) (*api.AccountReply, error) {
	var rep api.AccountReply
	if err := c.request(ctx, api.SubjectAccountGet, req, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// ListAccounts returns one page of the accounts the service manages,
// sorted by name. NextOffset in the reply is where the next page starts,
// 0 on the last; Accounts follows it for you.
func (c *Client) ListAccounts(ctx context.Context, req api.ListRequest) (*api.ListAccountsReply, error) {
	var rep api.ListAccountsReply
	if err := c.request(ctx, api.SubjectAccountList, req, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// Accounts iterates over the accounts from start.Offset on, asking for
// pages of start.Limit (0 lets the service choose) and following
// next_offset until the last page. A failed page yields its error once and
// ends the iteration. Pages are read one after the other, not as one
// snapshot: an account created or deleted meanwhile may be seen or missed.
func (c *Client) Accounts(ctx context.Context, start api.ListRequest) iter.Seq2[api.AccountSummary, error] {
	return pages(start.Offset, func(offset int) ([]api.AccountSummary, int, error) {
		req := start
		req.Offset = offset
		rep, err := c.ListAccounts(ctx, req)
		if err != nil {
			return nil, 0, err
		}
		return rep.Accounts, rep.NextOffset, nil
	})
}

// pages iterates over a paged list: fetch returns the entries at an
// offset and the next page's offset, 0 after the last. A next offset that
// does not move past the page ends the iteration with an error, so that
// paging always ends.
func pages[T any](offset int, fetch func(offset int) ([]T, int, error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		for {
			page, next, err := fetch(offset)
			if err != nil {
				yield(zero, err)
				return
			}
			for _, e := range page {
				if !yield(e, nil) {
					return
				}
			}
			if next == 0 {
				return
			}
			if len(page) == 0 || next <= offset {
				yield(zero, fmt.Errorf("client: the service returned %d entries at offset %d and next_offset %d; paging would not end", len(page), offset, next))
				return
			}
			offset = next
		}
	}
}

// UpdateAccount changes the fields the request gives (inside limits, only
// the limits given) and pushes the account.
func (c *Client) UpdateAccount(ctx context.Context, req api.UpdateAccountRequest) (*api.AccountReply, error) {
	var rep api.AccountReply
	if err := c.request(ctx, api.SubjectAccountUpdate, req, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// DeleteAccount disables the account on the servers, deletes it from
// their resolvers and forgets it.
func (c *Client) DeleteAccount(ctx context.Context, req api.AccountRequest) (*api.DeleteAccountReply, error) {
	var rep api.DeleteAccountReply
	if err := c.request(ctx, api.SubjectAccountDelete, req, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}
