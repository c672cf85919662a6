// The version `devmapper --version` prints (package.json's; a unit test keeps them equal).
export const VERSION = '0.1.0';
