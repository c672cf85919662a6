// The storage-driver face of the pool (Docker's devmapper Driver).
export { Driver } from './driver.js';
