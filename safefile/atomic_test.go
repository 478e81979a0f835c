package safefile

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteNewNeverShowsAHalfWrittenFile: WriteNew's file must appear at
// its name whole or not at all. A reader that finds it shorter than what
// is written proves that a crash at that moment leaves a half-written (or
// empty) key file under its final name, which init then refuses to
// overwrite and serve reads as a bad seed.
func TestWriteNewNeverShowsAHalfWrittenFile(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("SOAFAKESEEDFAKESEEDFAKESEEDFAKESEEDFAKESEEDFAKESEEDFAKESEEDFAK\n"), 1<<19) // 32 MiB
	for i := 0; i < 5; i++ {
		path := filepath.Join(dir, "key"+string(rune('0'+i))+".nk")
		done := make(chan error, 1)
		go func() { done <- WriteNew(path, data, 0o600) }()
		var partial int64 = -1
	poll:
		for {
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
				break poll
			default:
			}
			if fi, err := os.Stat(path); err == nil && fi.Size() < int64(len(data)) {
				partial = fi.Size()
			}
		}
		if partial >= 0 {
			t.Fatalf("%s was visible under its final name with %d of %d bytes before WriteNew returned", filepath.Base(path), partial, len(data))
		}
	}
}
