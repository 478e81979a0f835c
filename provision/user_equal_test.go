package provision_test

import (
	"reflect"
	"testing"

	"github.com/natsprov/provisioner/provision"
)

// TestUserEqualSeesEveryField: the stores tell a record already stored
// from another record of the same key with User.Equal, which lists the
// fields one by one (Tags make the struct incomparable with ==). A field
// added to User and not to Equal fails here.
func TestUserEqualSeesEveryField(t *testing.T) {
	typ := reflect.TypeFor[provision.User]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		var u provision.User
		v := reflect.ValueOf(&u).Elem().Field(i)
		switch v.Kind() {
		case reflect.String:
			v.SetString("x")
		case reflect.Int64:
			v.SetInt(1)
		case reflect.Bool:
			v.SetBool(true)
		case reflect.Slice:
			v.Set(reflect.ValueOf([]string{"x"}))
		default:
			t.Fatalf("field %s has kind %s, which this test does not set: extend it and User.Equal", f.Name, v.Kind())
		}
		if u.Equal(provision.User{}) || (provision.User{}).Equal(u) {
			t.Errorf("User.Equal does not tell records differing in %s apart", f.Name)
		}
		if !u.Equal(u) {
			t.Errorf("User.Equal: a record with %s set differs from itself", f.Name)
		}
	}
}
