package filestore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/natsprov/provisioner/filestore"
	"github.com/natsprov/provisioner/provision"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "store")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	s, err := filestore.Open(filepath.Join(dir, "store"), filestore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	// A second owner is refused at once.
	_, err = filestore.Open(filepath.Join(dir, "store"), filestore.Options{})
	fmt.Println(errors.Is(err, filestore.ErrLocked))

	_, err = s.AccountByName(context.Background(), "nobody")
	fmt.Println(errors.Is(err, provision.ErrNotFound))
	// Output:
	// true
	// true
}

func ExampleCheck() {
	dir, err := os.MkdirTemp("", "store")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := filestore.Open(dir, filestore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	s.Close()

	// An emptied journal is damage: Check names it, Open refuses.
	if err := os.Truncate(filepath.Join(dir, "journal.v2"), 0); err != nil {
		log.Fatal(err)
	}
	rep, err := filestore.Check(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, d := range rep.Damage {
		fmt.Printf("%s at byte %d: %s\n", filepath.Base(d.File), d.Offset, d.What)
	}
	_, err = filestore.Open(dir, filestore.Options{})
	fmt.Println(errors.Is(err, filestore.ErrDamaged))
	// Output:
	// journal.v2 at byte 0: the journal is 0 bytes, shorter than its 8192-byte header: emptied or cut
	// true
}
