// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title OwnerWallet: a small multi-owner contract wallet for Verdict's EIP-1271 tests.
/// @notice A signature over `hash` is valid when it is the concatenation of exactly `threshold`
/// 65-byte ECDSA signatures (r ‖ s ‖ v, v in {27, 28}, low s as EIP-2 requires) made by distinct
/// owners, ordered by strictly ascending signer address (as Safe orders them). Anything else
/// answers 0xffffffff; the wallet never reverts on a bad signature.
contract OwnerWallet {
    /// EIP-1271: bytes4(keccak256("isValidSignature(bytes32,bytes)")).
    bytes4 internal constant MAGIC_VALUE = 0x1626ba7e;
    bytes4 internal constant INVALID_SIGNATURE = 0xffffffff;
    /// secp256k1n / 2 (EIP-2): a larger s is the malleable twin of a valid signature.
    uint256 internal constant HALF_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    uint256 public immutable threshold;
    mapping(address => bool) public isOwner;
    address[] private owners;

    error InvalidOwner(address owner);
    error InvalidThreshold(uint256 threshold, uint256 ownerCount);

    constructor(address[] memory owners_, uint256 threshold_) {
        if (threshold_ == 0 || threshold_ > owners_.length) {
            revert InvalidThreshold(threshold_, owners_.length);
        }
        for (uint256 i = 0; i < owners_.length; ++i) {
            address owner = owners_[i];
            if (owner == address(0) || isOwner[owner]) revert InvalidOwner(owner);
            isOwner[owner] = true;
        }
        owners = owners_;
        threshold = threshold_;
    }

    function getOwners() external view returns (address[] memory) {
        return owners;
    }

    /// @notice EIP-1271: returns MAGIC_VALUE if `signature` is `threshold` owners' signatures of `hash`.
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        if (signature.length != threshold * 65) return INVALID_SIGNATURE;
        address previous = address(0);
        for (uint256 i = 0; i < threshold; ++i) {
            uint256 offset = i * 65;
            bytes32 r = bytes32(signature[offset:offset + 32]);
            bytes32 s = bytes32(signature[offset + 32:offset + 64]);
            uint8 v = uint8(signature[offset + 64]);
            if (v != 27 && v != 28) return INVALID_SIGNATURE;
            if (uint256(s) > HALF_ORDER) return INVALID_SIGNATURE;
            address signer = ecrecover(hash, v, r, s);
            // Strictly ascending: no owner counts twice, and a failed recovery (address 0) never passes.
            if (signer <= previous || !isOwner[signer]) return INVALID_SIGNATURE;
            previous = signer;
        }
        return MAGIC_VALUE;
    }
}
