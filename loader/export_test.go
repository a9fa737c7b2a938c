package loader

// SetAfterPlan lets a test run another writer between an apply's planning
// and its taking the lock.
func SetAfterPlan(f func()) { afterPlan = f }
