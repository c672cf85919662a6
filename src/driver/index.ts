// The storage-driver face of the pool (the seed's Driver).
export { Driver } from './driver.js';
