package client

import (
	"context"
	"fmt"
	"iter"

	"github.com/nats-io/jwt/v2"

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
// decoded claims. The service leaves the claims out of a reply they would
// make too large for one NATS message (Account.ClaimsOmitted says so);
// GetAccount then decodes them from the JWT, so Claims is always set.
func (c *Client) GetAccount(ctx context.Context, req api.AccountRequest) (*api.AccountReply, error) {
	var rep api.AccountReply
	if err := c.request(ctx, api.SubjectAccountGet, req, &rep); err != nil {
		return nil, err
	}
	if rep.Account.Claims == nil && rep.Account.JWT != "" {
		claims, err := jwt.DecodeAccountClaims(rep.Account.JWT)
		if err != nil {
			return nil, fmt.Errorf("client: the account's claims were left out of the reply (%s), and its JWT does not decode: %w", rep.Account.ClaimsOmitted, err)
		}
		rep.Account.Claims = claims
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
// snapshot: an account created or deleted meanwhile may be seen or missed,
// but one that stays is seen once with pages of two or more, as the list
// is sorted (by name, then public key): each page is asked for from the
// last account seen on, and read again from further back when that one
// is gone.
//
// When the service says it holds account records it cannot read (a
// damaged record: reply's Unreadable), the iteration ends, after the
// accounts it could read, with an *UnreadableError (it matches
// ErrUnreadable): the
// list is not all there, and a caller that took it for whole (to find
// accounts to delete, say) would miss some.
func (c *Client) Accounts(ctx context.Context, start api.ListRequest) iter.Seq2[api.AccountSummary, error] {
	key := func(a api.AccountSummary) string { return a.Name + "\x00" + a.PublicKey }
	return func(yield func(api.AccountSummary, error) bool) {
		unreadable := 0
		for a, err := range pages(start.Offset, key, func(offset int) ([]api.AccountSummary, int, error) {
			req := start
			req.Offset = offset
			rep, err := c.ListAccounts(ctx, req)
			if err != nil {
				return nil, 0, err
			}
			unreadable = max(unreadable, rep.Unreadable)
			return rep.Accounts, rep.NextOffset, nil
		}) {
			if !yield(a, err) || err != nil {
				return
			}
		}
		if unreadable > 0 {
			yield(api.AccountSummary{}, &UnreadableError{Count: unreadable})
		}
	}
}

// pages iterates over a paged list: fetch returns the entries at an
// offset and the next page's offset, 0 after the last. A next offset that
// does not move past the page ends the iteration with an error, so that
// paging always ends.
//
// With key, the list is sorted by it, and entries created or deleted
// before the iteration's place between two pages, which shift the offsets,
// cost no entry that stays: the next page is asked for from the last entry
// yielded on (when that still moves forward), entries not after it are
// skipped, and a page that starts after it (or is empty) is read again
// from further back.
func pages[T any](offset int, key func(T) string, fetch func(offset int) ([]T, int, error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		var last string
		seen := false
		overlap := false // offset is that of the last entry yielded
		step := 1
		for {
			page, next, err := fetch(offset)
			for err == nil && overlap && offset > 0 && (len(page) == 0 || key(page[0]) > last) {
				offset = max(0, offset-step)
				page, next, err = fetch(offset)
			}
			if err != nil {
				yield(zero, err)
				return
			}
			step = max(step, len(page))
			for _, e := range page {
				if key != nil {
					k := key(e)
					if seen && k <= last {
						continue
					}
					last, seen = k, true
				}
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
			overlap = key != nil && seen && next-1 > offset
			if offset = next; overlap {
				offset--
			}
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
