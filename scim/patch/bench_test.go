package patch

import (
	"fmt"
	"testing"

	"github.com/entrasync/entrasync/scim/schema"
)

// emails returns n email elements, numbered from first.
func emails(first, n int) []any {
	list := make([]any, n)
	for i := range list {
		list[i] = map[string]any{"value": fmt.Sprintf("u%d@example.com", first+i), "type": "work"}
	}
	return list
}

func userWith(n int) map[string]any {
	return map[string]any{"userName": "bench", "emails": emails(0, n)}
}

// The worst cases of issue 7: each changes as many elements as the
// document already holds. Time per operation doubling (not quadrupling)
// from 8,000 to 16,000 shows the work is linear.
func BenchmarkPatchMultiValued(b *testing.B) {
	cases := []struct {
		name string
		ops  func(n int) []Operation
	}{
		{"add", func(n int) []Operation {
			return []Operation{{Op: "add", Path: "emails", Value: emails(n, n)}}
		}},
		{"add-pathless", func(n int) []Operation {
			return []Operation{{Op: "add", Value: map[string]any{"emails": emails(n, n)}}}
		}},
		{"add-existing", func(n int) []Operation {
			return []Operation{{Op: "add", Path: "emails", Value: emails(0, n)}}
		}},
		{"remove-values", func(n int) []Operation {
			return []Operation{{Op: "remove", Path: "emails", Value: emails(0, n)}}
		}},
		{"remove-filter", func(n int) []Operation {
			return []Operation{{Op: "remove", Path: `emails[type eq "work"]`}}
		}},
		{"replace-filter", func(n int) []Operation {
			return []Operation{{Op: "replace", Path: `emails[type eq "work"].primary`, Value: true}}
		}},
		{"replace", func(n int) []Operation {
			return []Operation{{Op: "replace", Path: "emails", Value: emails(n, n)}}
		}},
	}
	for _, c := range cases {
		for _, n := range []int{8000, 16000} {
			b.Run(fmt.Sprintf("%s/%d", c.name, n), func(b *testing.B) {
				doc := userWith(n)
				ops := c.ops(n)
				b.ResetTimer()
				for b.Loop() {
					if _, _, err := Apply(schema.UserType, doc, ops); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// The worst a body at the 1 MiB limit can ask within the default limits:
// some 16,000 filtered operations, each scanning a list held at max_values
// (without the limit during the PATCH, 5,000 adds then 5,000 filtered
// removes took 8 s: each remove scanned the grown list).
func BenchmarkPatchManyOps(b *testing.B) {
	lim := schema.Limits{MaxValues: schema.DefaultMaxValues, MaxValueLength: schema.DefaultMaxValueLength, MaxDocumentSize: schema.DefaultMaxDocumentSize}
	for _, n := range []int{8000, 16000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			doc := userWith(lim.MaxValues - 1)
			var ops []Operation
			for i := range n / 2 {
				v := fmt.Sprintf("x%d@example.com", i)
				ops = append(ops,
					Operation{Op: "add", Path: "emails", Value: []any{map[string]any{"value": v}}},
					Operation{Op: "remove", Path: fmt.Sprintf(`emails[value eq %q]`, v)})
			}
			for b.Loop() {
				if _, _, err := ApplyWithin(schema.UserType, doc, ops, lim); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
