// The driver conformance suite (test/support/conformance.ts) on the host's
// drivers; devicemapper runs it in the VM (test/vm/devicemapper.test.ts).
import { conformance, setups } from '../support/conformance.js';

for (const setup of setups) conformance(setup);
