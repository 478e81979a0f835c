package keypair

// MaxDerived is how many derived public keys are remembered.
const MaxDerived = maxDerived
