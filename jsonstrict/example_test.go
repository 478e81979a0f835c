package jsonstrict_test

import (
	"errors"
	"fmt"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/jsonstrict"
)

func ExampleDecode() {
	for _, body := range []string{
		`{"name":"acme","limits":{"conn":10}}`,
		`{"Name":"acme"}`,
		`{"name":"acme","limits":{"con":10}}`,
		`{"name":"acme","limits":{"conn":"10"}}`,
		`{"name":"acme","tags":["a",2]}`,
		`{"name":"acme"} {}`,
	} {
		var req api.CreateAccountRequest
		err := jsonstrict.Decode([]byte(body), &req)
		var e *jsonstrict.Error
		if errors.As(err, &e) {
			fmt.Printf("%s (path %q)\n", err, e.Path)
			continue
		}
		fmt.Println(req.Name, *req.Limits.Conn)
	}
	// Output:
	// acme 10
	// unknown field "Name": use "name" (path "Name")
	// unknown field "limits.con": use "conn" (path "limits.con")
	// "limits.conn" must be a number, not a string (path "limits.conn")
	// "tags[1]" must be a string, not a number (path "tags[1]")
	// not valid JSON at byte 16: unexpected data after the JSON value, found '{' (path "")
}

// A field's aka tag names what users write when they mean it.
func ExampleDecode_aka() {
	type getRequest struct {
		Account string `json:"account" aka:"name,account_name"`
	}
	var req getRequest
	fmt.Println(jsonstrict.Decode([]byte(`{"name":"acme"}`), &req))
	// Output:
	// unknown field "name": use "account"
}

// An empty request is the caller's business: here it means "no fields".
func ExampleDecode_empty() {
	var req api.ListRequest
	body := []byte("")
	err := jsonstrict.Decode(body, &req)
	if errors.Is(err, jsonstrict.ErrEmpty) {
		err = jsonstrict.Decode([]byte("{}"), &req)
	}
	fmt.Println(err, req.Limit)
	// Output:
	// <nil> 0
}
