package filestore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLockSameProcess(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	if pid, ok := ownerRunning(dir); !ok || pid != os.Getpid() {
		t.Errorf("ownerRunning = %d, %v; want this process", pid, ok)
	}
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(err.Error(), dir) {
		t.Errorf("the error does not name the directory and this process: %v", err)
	}
	// The refused Open changed nothing of the open store.
	if _, err := s.CreateAccount(context.Background(), newAccount(t, "a")); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)
	if _, ok := ownerRunning(dir); ok {
		t.Error("ownerRunning after Close")
	}
	s = open(t, dir, Options{})
	if _, err := s.AccountByName(context.Background(), "a"); err != nil {
		t.Errorf("after a reopen: %v", err)
	}
}

func TestStaleLockFile(t *testing.T) {
	dir := t.TempDir()
	closeStore(t, open(t, dir, Options{}))
	// A lock file left by a process that is gone, with its pid.
	writeFile(t, filepath.Join(dir, lockFile), []byte("999999999\n"))
	s := open(t, dir, Options{})
	got := strings.TrimSpace(string(readFile(t, filepath.Join(dir, lockFile))))
	if got != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q, want this process's pid", got)
	}
	closeStore(t, s)
}

// TestLockHelperProcess is not a test: TestLockOtherProcess runs the test
// binary with it to hold a store open in another process.
func TestLockHelperProcess(t *testing.T) {
	dir := os.Getenv("FILESTORE_LOCK_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("open")
	// Hold the store until stdin closes, or until killed.
	bufio.NewReader(os.Stdin).ReadString('\n')
	s.Close()
	os.Exit(0)
}

func TestLockOtherProcess(t *testing.T) {
	tests := []struct {
		name string
		stop func(cmd *exec.Cmd, stdin *os.File) error
	}{
		{"owner closes", func(cmd *exec.Cmd, stdin *os.File) error { stdin.Close(); return cmd.Wait() }},
		{"owner killed", func(cmd *exec.Cmd, stdin *os.File) error {
			cmd.Process.Kill()
			cmd.Wait()
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$")
			cmd.Env = append(os.Environ(), "FILESTORE_LOCK_HELPER_DIR="+dir)
			cmd.Stdin = r
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			r.Close()
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); w.Close() })
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil || strings.TrimSpace(line) != "open" {
				t.Fatalf("helper: %q, %v", line, err)
			}

			_, err = Open(dir, Options{})
			if !errors.Is(err, ErrLocked) {
				t.Fatalf("Open while another process has the store: %v, want ErrLocked", err)
			}
			if want := fmt.Sprintf("process %d", cmd.Process.Pid); !strings.Contains(err.Error(), want) {
				t.Errorf("the error does not name the owner (%s): %v", want, err)
			}
			if pid, ok := ownerRunning(dir); !ok || pid != cmd.Process.Pid {
				t.Errorf("ownerRunning = %d, %v; want %d", pid, ok, cmd.Process.Pid)
			}
			// Check reads a store another process has open.
			rep, err := Check(dir, nil)
			if err != nil || rep.Damaged() || rep.Format != formatV2 {
				t.Errorf("Check of a store in use: %+v, %v", rep, err)
			}

			if err := tt.stop(cmd, w); err != nil {
				t.Fatalf("helper: %v", err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				s, err := Open(dir, Options{})
				if err == nil {
					closeStore(t, s)
					break
				}
				if !errors.Is(err, ErrLocked) || time.Now().After(deadline) {
					t.Fatalf("Open after the owner stopped: %v", err)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// TestLockFileRemovedUnderAWaitingOpen: a first Open that fails removes
// the lock file it marked. A second Open that opened that file just
// before, and takes its flock just after, holds a lock on a file no
// longer in the directory; a third Open then makes a new lock file and
// locks it too. Only one of the two may have the store.
func TestLockFileRemovedUnderAWaitingOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	opened := make(chan struct{})
	proceed := make(chan struct{})
	var once sync.Once
	origOpened := lockOpenedHook
	lockOpenedHook = func() {}
	t.Cleanup(func() { lockOpenedHook = origOpened })

	type result struct {
		s   *Store
		err error
	}
	second := make(chan result, 1)
	origStep := stepHook
	var first atomic.Bool
	first.Store(true)
	stepHook = func(step string) error {
		if step != stepLocked || !first.CompareAndSwap(true, false) {
			return nil
		}
		// The first Open holds the lock: the second opens the lock file
		// and waits, then the first fails.
		lockOpenedHook = func() {
			once.Do(func() {
				close(opened)
				<-proceed
			})
		}
		go func() {
			s, err := Open(dir, Options{})
			second <- result{s, err}
		}()
		<-opened
		return fmt.Errorf("%w at %s", errCrash, step)
	}
	t.Cleanup(func() { stepHook = origStep })

	if _, err := Open(dir, Options{}); !errors.Is(err, errCrash) {
		t.Fatalf("first Open: %v, want the simulated crash", err)
	}
	close(proceed)
	r := <-second
	if r.err != nil {
		if !errors.Is(r.err, ErrLocked) {
			t.Fatalf("second Open: %v", r.err)
		}
		return // refused: nothing held twice
	}
	t.Cleanup(func() { r.s.Close() })
	third, err := Open(dir, Options{})
	if err == nil {
		third.Close()
		t.Fatal("a third Open has the store while the second has it open: the second locked a lock file no longer in the directory")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("third Open: %v, want ErrLocked", err)
	}
}
