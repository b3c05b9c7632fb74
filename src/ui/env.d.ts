// CSS imported for its side effect: esbuild bundles it into dist/ui/main.css.
declare module "*.css";
