/**
 * Key services as a layer of their own (DESIGN §3): for now the pure
 * placement; the manager (clms/keyservices.ts) moves here with issue 14
 * step 3. Uses CLMS through clms/index.ts only (test/architecture.test.ts).
 */
export { downKey, eligibleHost, hostStateOf, placement, type PlacementInput, type PlacementStep } from './placement.js';
